"""Errors a user can cause and fix: bad arguments, bad parameters, missing or damaged input files.

Their message is the whole report (what is wrong, why it matters, what to change), so the command line
(``resnet_lib/__main__.py``) prints it as one line instead of a traceback, and a notebook shows it as the
cell's one exception. ``UserError`` is a ``ValueError``, so code that catches the library's older
``ValueError``s for bad input catches these too.
"""
from __future__ import annotations

import json
import os
import sys


class UserError(ValueError):
    """Bad input; the message says what to change."""


class ParameterError(UserError):
    """A notebook parameter that the notebook does not know, or of the wrong type."""


# What a user can cause and fix from the message alone. The library reports bad input as ValueError
# (UserError is one) and file problems as OSError (missing, permission, disk full).
USER_ERRORS = (ValueError, OSError)
EXIT_USER_ERROR = 2      # as argparse exits on a bad option
EXIT_INTERRUPTED = 130   # as a shell reports Ctrl-C


def debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """Whether ``--debug`` (anywhere on the line) or ``RESNET_DEBUG=1`` asks for tracebacks; argv without it."""
    debug = "--debug" in argv or os.environ.get("RESNET_DEBUG", "") not in ("", "0")
    return debug, [a for a in argv if a != "--debug"]


def report_errors(run, argv: list[str], interrupted: str = "interrupted") -> int:
    """``run(argv)``'s exit code, with bad input (:data:`USER_ERRORS`) reported as one line ``error: ...`` on stderr
    (exit code 2) and Ctrl-C as the line ``interrupted`` (130), no traceback; with ``--debug`` or ``RESNET_DEBUG=1``,
    the exception itself. Every entry point of the command line goes through it: ``python -m resnet_lib`` and
    ``torchrun ... -m resnet_lib.experiments.imagenet_train`` (where, with several processes, each line names
    its rank: each rank reports what it met)."""
    debug, argv = debug_requested(argv)
    if debug:
        return run(argv) or 0
    rank = os.environ.get("RANK") if int(os.environ.get("WORLD_SIZE", "1")) > 1 else None
    who = f"[rank {rank}] " if rank is not None else ""
    try:
        return run(argv) or 0
    except USER_ERRORS as e:
        print(f"{who}error: {message(e)}", file=sys.stderr)
        print("(add --debug or set RESNET_DEBUG=1 to see where it happened)", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"{who}{interrupted}", file=sys.stderr)
        return EXIT_INTERRUPTED


def message(e: BaseException) -> str:
    """The exception's own message; an OSError without one (``[Errno 28] No space left on device``)
    gets the file it concerns."""
    text = str(e) or type(e).__name__
    if isinstance(e, json.JSONDecodeError):  # its message names neither the file nor the problem
        text = f"a stored JSON file is damaged or was cut short ({text}); --debug shows which"
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text += f": {e.filename}"
    return text
