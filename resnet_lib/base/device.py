"""Device choice and the precision/memory-format settings that make training fast on it."""
from __future__ import annotations

import functools
import os
import tempfile

import torch

from .precision import POLICIES, autocast, resolve, set_backends  # noqa: F401 (autocast: API)

_VALID = ("auto", "cpu", "cuda", "mps")


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` takes a GPU when there is one, else the CPU."""
    if isinstance(device, torch.device):
        return device
    name = str(device)
    if name.split(":")[0] not in _VALID:
        raise ValueError(f"unknown device {device!r}; use one of {', '.join(_VALID)} (or 'cuda:N')")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but torch sees no CUDA GPU; use DEVICE='auto' or 'cpu'")
    return torch.device(name)


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: capped at one of these, oneDNN has no
# native bf16 kernels and emulates bf16 by conversion, slower than fp32, whatever the CPU's flags say
_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def onednn_max_isa() -> str:
    """The ISA cap oneDNN obeys (``ONEDNN_MAX_CPU_ISA``, or its old name ``DNNL_MAX_CPU_ISA``); "DEFAULT": none."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "DEFAULT").strip().upper()


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN will run bf16 natively: the CPU has AVX512-BF16 or AMX-BF16 *and* oneDNN is not
    capped below them (``ONEDNN_MAX_CPU_ISA=AVX2`` makes a bf16 CPU behave like an AVX2-only one)."""
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"}) and onednn_max_isa() not in _ISAS_WITHOUT_BF16


@functools.cache
def onednn_isa() -> str:
    """The instruction set oneDNN runs its CPU kernels with, as oneDNN itself reports it (its verbose
    header, read from a tiny convolution), e.g. "Intel AVX2"; the environment's cap if it cannot be read."""
    saved = os.dup(1)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 1)  # oneDNN prints from C++ to file descriptor 1
            try:
                with torch.backends.mkldnn.verbose(torch.backends.mkldnn.VERBOSE_ON):
                    torch.nn.functional.conv2d(torch.ones(2, 16, 8, 8), torch.ones(16, 16, 3, 3))
            finally:
                os.dup2(saved, 1)
            tmp.seek(0)
            text = tmp.read().decode(errors="replace")
    except (OSError, RuntimeError):
        text = ""
    finally:
        os.close(saved)
    for line in text.splitlines():
        if ",info,cpu,isa:" in line:
            return line.split("isa:", 1)[1].strip()
    return f"ONEDNN_MAX_CPU_ISA={onednn_max_isa()}"  # the header prints once per process: already consumed


def cpu_path(bf16: bool | None = None, channels_last: bool | None = None) -> dict:
    """Which CPU code path runs: oneDNN's ISA, precision, memory format, threads and the allocator settings."""
    from .malloc import malloc_settings
    out = {"onednn_isa": onednn_isa(), "onednn_max_isa": onednn_max_isa(), "fast_bf16": cpu_has_fast_bf16(),
           "threads": torch.get_num_threads(), "malloc": malloc_settings()}
    if bf16 is not None:
        out["precision"] = "bf16 autocast" if bf16 else "fp32"
    if channels_last is not None:
        out["memory_format"] = "channels_last" if channels_last else "NCHW"
    return out


def use_bf16(device: torch.device, amp: str | bool = "auto") -> bool:
    """Whether the precision setting ``amp`` (a policy name, "auto", or the older "off") runs bf16 autocast on
    ``device``; see ``base.precision``."""
    return resolve(device, amp).autocast


def full_fp32(device: torch.device) -> None:
    """Make fp32 mean fp32 on a GPU (TF32 off, process-wide); see ``base.precision.set_backends``."""
    set_backends(device, POLICIES["fp32"])


def tf32_convolutions() -> bool:
    """Whether cuDNN may run fp32 convolutions in TF32 (see ``full_fp32``)."""
    conv = getattr(torch.backends.cudnn, "conv", None)
    if hasattr(conv, "fp32_precision"):
        return conv.fp32_precision == "tf32"
    return bool(torch.backends.cudnn.allow_tf32)
