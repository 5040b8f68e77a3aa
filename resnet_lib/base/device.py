"""Device choice and the precision/memory-format settings that make training fast on it."""
from __future__ import annotations

import functools
import os
import tempfile

import torch

from .precision import (  # noqa: F401 (autocast, _cpu_flags: API; the bf16 test lives with the policies it decides)
    POLICIES,
    _cpu_flags,
    autocast,
    cpu_has_fast_bf16,
    onednn_max_isa,
    resolve,
    set_backends,
)

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
