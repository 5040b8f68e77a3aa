"""The SGD step through ``torch.compile`` on a CPU, for runs long enough to pay for the compilation.

On a CPU about half of a CIFAR ResNet's training step is batch norm, ReLU and additions: memory-bound
passes over activations that eager PyTorch runs one by one (``torch.profiler`` on ResNet-20, batch 128:
BN forward and backward 26%, ReLU forward and backward 17%, the convolutions 37%). Inductor fuses them
into a few C++ loops; on 2 cores ResNet-20 trains about 20% faster, bf16 and fp32 alike, after a
compilation of 20-30 s. So ``compile="auto"`` compiles only on a CPU, only for runs of at least
:data:`AUTO_MIN_ITERS` iterations, and only where a C++ compiler is found; on a GPU the CUDA graph does the
same job. The first compiled step is the test: if compiling fails, the run says why once and goes on eagerly.
The model's own parameters are trained (``torch.compile`` wraps, it does not copy), so checkpoints and
results are those of the eager model.
"""
from __future__ import annotations

import os
import shutil
import warnings

import torch
import torch.nn as nn

from .config import TrainConfig
from .step import sgd_step

AUTO_MIN_ITERS = 3_000  # ~25 s of compilation is repaid after ~1,200 ResNet-20 iterations on 2 cores


def cxx_compiler() -> str | None:
    """The C++ compiler Inductor would use (``$CXX``, else g++), or None when there is none."""
    return shutil.which(os.environ.get("CXX", "g++"))


def use_compile(dev: torch.device, cfg: TrainConfig, world: int) -> bool:
    """Whether ``fit`` runs its step through ``torch.compile``: see the module docstring."""
    if cfg.compile == "on" and dev.type != "cpu":
        raise ValueError(f"compile='on' is for CPU runs (on {dev} the CUDA graph replays the step); use 'auto' or 'off'")
    if cfg.compile == "on" and cxx_compiler() is None:
        raise ValueError("compile='on' needs a C++ compiler (g++, or $CXX) for torch.compile on a CPU; install one "
                         "(Debian: apt-get install g++) or use compile='auto' / 'off'")
    if cfg.compile == "off" or dev.type != "cpu" or world != 1:
        return False
    return cfg.compile == "on" or (cfg.iters >= AUTO_MIN_ITERS and cxx_compiler() is not None)


class CompiledStep:
    """``sgd_step`` with the model run through ``torch.compile``; falls back to the eager model for good if
    the first compiled step fails (no compiler, an unsupported op), with one warning saying why."""

    def __init__(self, net: nn.Module):
        self.net, self.fn = net, torch.compile(net)
        self.state = "untried"  # then "compiled" or "eager"

    def __call__(self, opt, x, y, dev, bf16):
        if self.state == "eager":
            return sgd_step(self.net, opt, x, y, dev, bf16)
        try:
            out = sgd_step(self.fn, opt, x, y, dev, bf16)
        except Exception as e:  # compilation errors come in many types (backend, lowering, C++ build)
            if self.state == "compiled":
                raise
            why = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e) else type(e).__name__
            warnings.warn(f"torch.compile failed on this machine ({why}); training goes on without it (set "
                          "compile='off' to skip the attempt)", stacklevel=2)
            self.state = "eager"
            opt.zero_grad(set_to_none=True)
            return sgd_step(self.net, opt, x, y, dev, bf16)
        self.state = "compiled"
        return out
