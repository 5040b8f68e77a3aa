"""Command line: ``python -m resnet_lib <command> [options]``; ``--help`` on each command."""
from __future__ import annotations

import argparse
import importlib
import sys

# command -> "module:function"; each function takes the remaining argv and returns an exit code.
COMMANDS = {
    "fetch": ("resnet_lib.cifar_data:cli", "fetch and verify CIFAR-10 into the cache folder"),
    "train": ("resnet_lib.train:cli", "train a CIFAR-10 plain or residual net (paper Section 4.2)"),
    "run-notebooks": ("resnet_lib.cli:run_notebooks", "the main job: execute every notebook, then the summary"),
    "parameterize": ("resnet_lib.cli:parameterize", "write notebooks with (tiny) parameters injected, unexecuted"),
    "sweep": ("resnet_lib.sweep:cli", "run a notebook over a grid of parameters and gather the results"),
    "train-imagenet": ("resnet_lib.imagenet_train:cli", "train on an ImageFolder / Tiny ImageNet (torchrun-ready)"),
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
