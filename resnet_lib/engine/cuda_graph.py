"""The whole SGD step captured in a CUDA graph and replayed (one GPU)."""
from __future__ import annotations

import torch
import torch.nn as nn

from .config import TrainConfig
from .step import sgd_step


class CudaGraphStep:
    """The whole SGD step (forward, backward, update) captured once in a CUDA graph and replayed.

    A CIFAR ResNet-20 step is hundreds of small kernels; launched one by one from Python, the GPU
    mostly waits for the CPU. Replaying the captured graph launches them all at once. The numbers are
    the eager step's: the same ``torch.optim.SGD`` runs inside the capture. The learning rate is a
    Python number baked into the captured update, so the step is captured again whenever it changes
    (three times in the paper's schedule). The first ``eager_steps`` iterations of each ``fit`` call
    run eagerly on a side stream, as CUDA graph capture requires (they create the momentum buffers
    and let cuDNN choose its kernels); they are ordinary training iterations.

    ``step_fn`` is the step to capture (default ``sgd_step``; another with its signature, such as the fused
    seeds' ``fused_step``, works the same way).
    """

    def __init__(self, net: nn.Module, opt: torch.optim.Optimizer, dev: torch.device, bf16: bool,
                 eager_steps: int = 3, step_fn=sgd_step):
        self.net, self.opt, self.dev, self.bf16, self.step_fn = net, opt, dev, bf16, step_fn
        self.eager_left = eager_steps
        self.graph = self.lr = None
        self.captures = 0

    def _eager(self, x, y):
        side = torch.cuda.Stream(self.dev)
        side.wait_stream(torch.cuda.current_stream(self.dev))
        with torch.cuda.stream(side):
            self.opt.zero_grad(set_to_none=True)
            out = self.step_fn(self.net, self.opt, x, y, self.dev, self.bf16)
        torch.cuda.current_stream(self.dev).wait_stream(side)
        return out

    def _capture(self, x, y, lr):
        self.graph = None
        self.x, self.y = torch.empty_like(x), torch.empty_like(y)
        self.opt.zero_grad(set_to_none=True)  # the gradients are then allocated, and overwritten, by the graph
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self.loss, self.wrong = self.step_fn(self.net, self.opt, self.x, self.y, self.dev, self.bf16, cache=False)
        self.graph, self.lr = graph, lr
        self.captures += 1

    def __call__(self, x, y):
        if self.eager_left > 0:
            self.eager_left -= 1
            return self._eager(x, y)
        if self.graph is not None and (x.shape != self.x.shape or y.shape != self.y.shape):
            self.opt.zero_grad(set_to_none=True)  # an odd-sized batch: one eager step (the graph keeps its own buffers)
            return self.step_fn(self.net, self.opt, x, y, self.dev, self.bf16)
        lr = self.opt.param_groups[0]["lr"]
        if self.graph is None or lr != self.lr:
            self._capture(x, y, lr)
        self.x.copy_(x)
        self.y.copy_(y)
        self.graph.replay()
        return self.loss, self.wrong  # overwritten by the next replay: read (or copy) them before it


def use_cuda_graph(dev: torch.device, cfg: TrainConfig, world: int) -> bool:
    """Whether ``fit`` replays its step from a CUDA graph: on one GPU unless ``cfg.cuda_graph`` is "off".
    Under DDP the eager step stays (its gradient hooks would need more care under capture)."""
    if cfg.cuda_graph == "on" and dev.type != "cuda":
        raise ValueError(f"cuda_graph='on' needs a CUDA device, but this run is on {dev}; use 'auto' or 'off'")
    if cfg.cuda_graph == "on" and world > 1:
        raise ValueError("cuda_graph='on' is not supported with several processes (DDP); use 'auto' or 'off'")
    return cfg.cuda_graph != "off" and dev.type == "cuda" and world == 1
