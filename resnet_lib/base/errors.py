"""Errors a user can cause and fix: bad arguments, bad parameters, missing or damaged input files.

Their message is the whole report (what is wrong, why it matters, what to change), so the command line
(``resnet_lib/__main__.py``) prints it as one line instead of a traceback, and a notebook shows it as the
cell's one exception. ``UserError`` is a ``ValueError``, so code that catches the library's older
``ValueError``s for bad input catches these too.
"""
from __future__ import annotations


class UserError(ValueError):
    """Bad input; the message says what to change."""


class ParameterError(UserError):
    """A notebook parameter that the notebook does not know, or of the wrong type."""
