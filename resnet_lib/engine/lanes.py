"""Several runs trained at once on one device, advanced in turn one step each (issue #10).

A CIFAR step at batch 128 leaves a big GPU mostly waiting: even replayed from a CUDA graph, a ResNet-110
step is a long chain of small kernels. Runs of *different* nets cannot be fused into one wide net, but
each can replay its own graph on its own CUDA stream, so that the GPU works on several at once. A
:class:`Lanes` holds such runs (``Trainer.steps`` generators) and advances each by one SGD step per
round, on its own stream. Each run computes exactly what it computes alone (its own model, optimizer,
data order and graph; nothing is shared but the GPU), so a run trained in a lane ends where it ends alone;
a CPU test checks that bitwise, a CUDA test within float rounding.

On a CPU there are no streams and nothing is gained: lanes there only interleave (the tests use it).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from .loop import Trainer


@dataclass
class Lane:
    key: str
    trainer: Trainer
    steps_gen: object
    stream: torch.cuda.Stream | None
    steps: int = 0                       # steps taken in this lane
    meta: dict = field(default_factory=dict)
    error: Exception | None = None       # what stopped the run, if it raised


class Lanes:
    """Runs advanced in turn, one SGD step each, each on its own CUDA stream on a GPU."""

    def __init__(self, dev: torch.device):
        self.dev, self.live = dev, []

    def on(self, lane: Lane):
        """The context that makes ``lane``'s stream the current one (nothing on a CPU)."""
        return torch.cuda.stream(lane.stream) if lane.stream is not None else contextlib.nullcontext()

    def add(self, key: str, trainer: Trainer, **meta) -> Lane:
        """Start ``trainer`` (prepared and resumed) in a lane of its own."""
        stream = None
        if self.dev.type == "cuda":
            stream = torch.cuda.Stream(self.dev)
            stream.wait_stream(torch.cuda.current_stream(self.dev))  # its weights and data were put there first
        lane = Lane(key, trainer, trainer.steps(), stream, meta=meta)
        self.live.append(lane)
        return lane

    def advance(self) -> list[Lane]:
        """One step of every live lane, in turn; the lanes whose run reached its end (or a planned stop) are
        taken out and returned (finish a complete one with :meth:`finish`). A run that raises (e.g. it
        diverged) is taken out too, its error set as ``lane.error``, and returned: the others go on."""
        ended = []
        for lane in list(self.live):
            with self.on(lane):
                try:
                    next(lane.steps_gen)
                    lane.steps += 1
                except StopIteration:
                    self.live.remove(lane)
                    ended.append(lane)
                except Exception as e:  # noqa: BLE001 - handed to the caller with the lane
                    self.live.remove(lane)
                    lane.error = e
                    ended.append(lane)
        return ended

    def finish(self, lane: Lane):
        """The ended run's ``finish`` (its result, written), on its stream; then the device settles, so that
        nothing of it is still in flight when its memory is given back."""
        with self.on(lane):
            out = lane.trainer.finish()
        self.settle(lane)
        return out

    def stop_all(self) -> list[Lane]:
        """Stop every live run where it stands, each with a checkpoint to resume from (``Trainer.stop``)."""
        stopped, self.live = self.live, []
        for lane in stopped:
            with self.on(lane):
                lane.steps_gen.close()
                if lane.steps:  # a lane never advanced holds nothing beyond its checkpoint
                    lane.trainer.stop()
            self.settle(lane)
        return stopped

    def settle(self, lane: Lane) -> None:
        if lane.stream is not None:
            torch.cuda.current_stream(self.dev).wait_stream(lane.stream)
            torch.cuda.synchronize(self.dev)
