"""Command line: ``python -m resnet_lib <command> [options]``; ``--help`` on each command.

Bad input (an argument, a parameter, a missing or damaged file, an output folder that cannot be written)
is reported as one line, ``error: <what, why, the fix>``, with exit code 2 and no traceback; ``--debug``
(anywhere on the line) or ``RESNET_DEBUG=1`` shows the traceback as well.
"""
from __future__ import annotations

import importlib
import sys

from resnet_lib.base.errors import (  # noqa: F401 (the exit codes: tests)
    EXIT_INTERRUPTED,
    EXIT_USER_ERROR,
    USER_ERRORS,
    debug_requested,
    report_errors,
)

# command -> "module:function"; each function takes the remaining argv and returns an exit code.
COMMANDS = {
    "fetch": ("resnet_lib.data.cifar:cli", "fetch and verify CIFAR-10 into the cache folder"),
    "train": ("resnet_lib.experiments.cifar_runs:cli", "train a CIFAR-10 plain or residual net (paper Section 4.2)"),
    "run-notebooks": ("resnet_lib.runner.cli:run_notebooks", "the main job: execute every notebook, then the summary"),
    "book": ("resnet_lib.runner.book:cli", "the executed notebooks as a static site: <out>/book/index.html"),
    "parameterize": ("resnet_lib.runner.cli:parameterize", "write notebooks with (tiny) parameters injected, unexecuted"),
    "sweep": ("resnet_lib.runner.sweep:cli", "run a notebook over a grid of parameters and gather the results"),
    "campaign": ("resnet_lib.campaign.command:cli", "train a named set of CIFAR runs within a time budget; resumable"),
    "precision-study": ("resnet_lib.campaign.precision_study:cli",
                        "the precision policies' early training error by depth, same seeds (issue #25)"),
    "grad-precision": ("resnet_lib.experiments.grad_precision:cli", "bf16 autocast's gradient against fp32's, by depth"),
    "readme": ("resnet_lib.runner.readme:cli", "rewrite the README's and docs' result blocks from results/ (--check: compare)"),
    "train-imagenet": ("resnet_lib.experiments.imagenet_train:cli", "train on an ImageFolder / Tiny ImageNet (torchrun-ready)"),
}


def _usage() -> None:
    print("usage: python -m resnet_lib [--debug] <command> [options]\n\ncommands:")
    for name, (_, doc) in COMMANDS.items():
        print(f"  {name:15s} {doc}")
    print("\n--debug (or RESNET_DEBUG=1): show the traceback of an error, not only its message")


def _run(argv: list[str]) -> int:
    target, _ = COMMANDS[argv[0]]
    mod, fn = target.split(":")
    return getattr(importlib.import_module(mod), fn)(argv[1:]) or 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    _, words = debug_requested(argv)
    if not words or words[0] in ("-h", "--help") or words[0] not in COMMANDS:
        _usage()
        if words and words[0] not in ("-h", "--help"):
            print(f"error: unknown command {words[0]!r}; use one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 0 if (not words or words[0] in ("-h", "--help")) else EXIT_USER_ERROR
    resumes = " (training resumes from its last checkpoint when the same command runs again)"
    return report_errors(_run, argv, interrupted=f"interrupted{resumes if words[0].startswith('train') else ''}")


if __name__ == "__main__":
    sys.exit(main())
