"""Precision policies: what a training step computes and stores in, by name.

The paper trained in fp32. A faster precision is faithful only if it trains the same nets to the same
errors, and the deep ResNets are where it may not: under bf16 autocast every BN output, every residual
addition and so the whole identity path is bf16 (an 8-bit mantissa), and the rounding error of the gradient
grows with depth (``experiments.grad_precision``). So a run names its policy, the policy is part of the
run's identity (``engine.checkpoint.run_identity``: a run trained in bf16 is another run than the same net
in fp32), and ``campaign.precision_study`` measures which policies keep the paper's depth trend.

=============  ===============================================================================================
``fp32``       everything in fp32, as the paper; on a GPU with TF32 off (cuDNN would otherwise run fp32
               convolutions in TF32, a 10-bit mantissa)
``tf32``       a GPU's TF32 convolutions and matmuls; everything stored and added in fp32 (GPU only)
``bf16``       bf16 autocast: convolutions, and so BN, ReLU and the residual additions that follow them, in bf16
``bf16-conv``  the convolutions (and the classifier) in bf16; each convolution's output is cast back to fp32,
               so BN, ReLU and every residual addition, the identity path, stay fp32 (forward and backward)
=============  ===============================================================================================

``auto`` is :data:`AUTO`'s choice for the kind of device (:func:`auto_key`): the fastest policy the precision study
found faithful there.
The older ``amp`` values are still accepted: ``off`` is ``fp32``; ``bf16`` is unchanged.
"""
from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass

import torch
import torch.nn as nn


@dataclass(frozen=True)
class Policy:
    name: str
    label: str            # as results and pieces record it ("fp32" and "bf16 autocast" as before the names)
    autocast: bool        # bf16 autocast around the forward pass
    fp32_identity: bool   # each convolution's output cast back to fp32
    tf32: bool            # TF32 convolutions and matmuls (a GPU's)

    @property
    def channels_last(self) -> bool:
        """The memory format that pays with it: channels-last for bf16 convolutions (oneDNN, cuDNN)."""
        return self.autocast

    def __str__(self) -> str:
        return self.name


POLICIES = {p.name: p for p in (
    Policy("fp32", "fp32", autocast=False, fp32_identity=False, tf32=False),
    Policy("tf32", "tf32", autocast=False, fp32_identity=False, tf32=True),
    Policy("bf16", "bf16 autocast", autocast=True, fp32_identity=False, tf32=False),
    Policy("bf16-conv", "bf16 convolutions, fp32 identity path", autocast=True, fp32_identity=True, tf32=False),
)}
LEGACY = {"off": "fp32"}  # the old ``amp`` values that are not policy names
SETTINGS = ("auto", *POLICIES, *LEGACY)

# What "auto" trains in, by device kind (:func:`auto_key`): the fastest policy that campaign/precision_study.py
# found faithful, by that kind's measured cost (results/precision/; tests/test_precision_study.py checks that this
# table agrees with the committed decision). A CPU with fast bf16 units is its own kind: bf16 halves its step,
# while an AVX2-only CPU emulates bf16 at a tenth of fp32's speed.
AUTO = {"cuda": "fp32", "cpu": "fp32", "cpu-bf16": "fp32", "mps": "fp32"}


# oneDNN's ISA names (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: capped at one of these, oneDNN has no
# native bf16 kernels and emulates bf16 by conversion, slower than fp32, whatever the CPU's flags say
_ISAS_WITHOUT_BF16 = ("SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI")


@functools.cache  # read once: resolve(..., "auto") asks on every call
def _cpu_flags() -> frozenset[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def onednn_max_isa() -> str:
    """The ISA cap oneDNN obeys (``ONEDNN_MAX_CPU_ISA``, or its old name ``DNNL_MAX_CPU_ISA``); "DEFAULT": none."""
    return (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "DEFAULT").strip().upper()


def cpu_has_fast_bf16() -> bool:
    """True where oneDNN will run bf16 natively: the CPU has AVX512-BF16 or AMX-BF16 *and* oneDNN is not
    capped below them (``ONEDNN_MAX_CPU_ISA=AVX2`` makes a bf16 CPU behave like an AVX2-only one)."""
    flags = _cpu_flags()
    return bool(flags & {"avx512_bf16", "amx_bf16"}) and onednn_max_isa() not in _ISAS_WITHOUT_BF16


def auto_key(device: torch.device) -> str:
    """The device kind :data:`AUTO` is keyed by: "cpu-bf16" for a CPU with fast bf16 (and oneDNN not capped
    below it), else the device type."""
    return "cpu-bf16" if device.type == "cpu" and cpu_has_fast_bf16() else device.type


def canonical(setting: str | bool) -> str:
    """A setting's canonical name ("auto" or a policy); a clear error for anything else."""
    if setting is True:
        return "bf16"
    if setting is False:
        return "fp32"
    name = LEGACY.get(setting, setting)
    if name != "auto" and name not in POLICIES:
        raise ValueError(f"unknown precision {setting!r}; use one of {', '.join(SETTINGS[:-len(LEGACY)])} "
                         f"(or the older 'off' for fp32)")
    return name


def resolve(device: torch.device, setting: str | bool = "auto") -> Policy:
    """The policy ``setting`` means on ``device`` ("auto": :data:`AUTO`'s choice there)."""
    name = canonical(setting)
    if name == "auto":
        name = AUTO.get(auto_key(device), "fp32")
    policy = POLICIES[name]
    if policy.tf32 and device.type != "cuda":
        raise ValueError(f"precision 'tf32' is a GPU's (TF32 tensor cores); on {device.type} use 'fp32' or 'bf16'")
    return policy


def from_label(label: str | None) -> Policy | None:
    """The policy a result or piece recorded (its ``label``); None for an unknown or missing one."""
    return next((p for p in POLICIES.values() if p.label == label), None)


def set_backends(device: torch.device, policy: Policy) -> None:
    """Process-wide: TF32 on a GPU exactly when the policy says so (fp32 must mean fp32 there). bf16 runs
    are unaffected (their convolutions are bf16); nothing changes on a CPU."""
    if device.type != "cuda":
        return
    backends = torch.backends
    if hasattr(getattr(backends.cudnn, "conv", None), "fp32_precision"):  # torch >= 2.9: the per-backend API
        mode = "tf32" if policy.tf32 else "ieee"
        backends.cudnn.conv.fp32_precision = backends.cudnn.rnn.fp32_precision = mode
        backends.cuda.matmul.fp32_precision = mode
    else:
        backends.cudnn.allow_tf32 = backends.cuda.matmul.allow_tf32 = policy.tf32


def _to_fp32(module, inputs, output):
    return output.float()


def attach(model: nn.Module, policy: Policy) -> nn.Module:
    """Give ``model`` what ``policy`` needs of it: for ``bf16-conv``, a forward hook on every convolution that
    casts its output back to fp32 (autocast casts the next convolution's input to bf16 again). Idempotent, and
    safe on a deep copy: the hooks are found by their function, so a model attached to another policy before
    (or copied from one) loses that policy's hooks."""
    for m in model.modules():
        for key in [k for k, fn in m._forward_hooks.items() if fn is _to_fp32]:
            del m._forward_hooks[key]
        if policy.fp32_identity and isinstance(m, nn.Conv2d):
            m.register_forward_hook(_to_fp32)
    return model


def attached(model: nn.Module) -> bool:
    """Whether ``model`` carries ``bf16-conv``'s hooks."""
    return any(fn is _to_fp32 for m in model.modules() for fn in m._forward_hooks.values())


def autocast(device: torch.device, policy: Policy | bool, cache: bool = True):
    """The autocast context of ``policy`` (a bool: bf16 autocast on or off). ``cache=False`` while capturing a
    CUDA graph (autocast's weight-cast cache must not outlive the capture)."""
    on = policy.autocast if isinstance(policy, Policy) else bool(policy)
    if not on:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, cache_enabled=cache)
