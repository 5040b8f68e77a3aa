"""Command line: ``python -m resnet_lib <command> [options]``; ``--help`` on each command."""
from __future__ import annotations

import importlib
import sys

# command -> "module:function"; each function takes the remaining argv and returns an exit code.
COMMANDS = {
    "fetch": ("resnet_lib.data.cifar:cli", "fetch and verify CIFAR-10 into the cache folder"),
    "train": ("resnet_lib.experiments.cifar_runs:cli", "train a CIFAR-10 plain or residual net (paper Section 4.2)"),
    "run-notebooks": ("resnet_lib.runner.cli:run_notebooks", "the main job: execute every notebook, then the summary"),
    "book": ("resnet_lib.runner.book:cli", "the executed notebooks as a static site: <out>/book/index.html"),
    "parameterize": ("resnet_lib.runner.cli:parameterize", "write notebooks with (tiny) parameters injected, unexecuted"),
    "sweep": ("resnet_lib.runner.sweep:cli", "run a notebook over a grid of parameters and gather the results"),
    "train-imagenet": ("resnet_lib.experiments.imagenet_train:cli", "train on an ImageFolder / Tiny ImageNet (torchrun-ready)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        print("usage: python -m resnet_lib <command> [options]\n\ncommands:")
        for name, (_, doc) in COMMANDS.items():
            print(f"  {name:15s} {doc}")
        return 0 if (not argv or argv[0] in ("-h", "--help")) else 2
    target, _ = COMMANDS[argv[0]]
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
