"""Device choice and the precision/memory-format settings that make training fast on it."""
from __future__ import annotations

import contextlib

import torch

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


def cpu_has_fast_bf16() -> bool:
    """True where the CPU has native bf16 dot products (AVX512-BF16 / AMX), which oneDNN uses."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
        return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        return False


def use_bf16(device: torch.device, amp: str | bool = "auto") -> bool:
    """bf16 autocast where it helps: any CUDA GPU with bf16, or a CPU with native bf16 units."""
    if amp in (False, "off", "fp32"):
        return False
    if amp in (True, "bf16"):
        return True
    if amp != "auto":
        raise ValueError(f"unknown amp setting {amp!r}; use 'auto', 'bf16' or 'off'")
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_fast_bf16()


def autocast(device: torch.device, enabled: bool, cache: bool = True):
    """bf16 autocast on ``device`` when ``enabled``. ``cache=False`` while capturing a CUDA graph
    (autocast's weight-cast cache must not outlive the capture)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
