"""Exit codes and error lines: how the CLI speaks the error tree.

0 success, 2 invalid input (or a job already past what was asked: cancelling a finished job), 3
authentication or permission, 4 not found or expired, 5 timeout, 6 service or connection error, 130
cancelled, 1 a bug in img2vid itself.
"""

from __future__ import annotations

import sys
import traceback

from rich.console import Console

from .. import errors

__all__ = ["EXIT_CODES", "exit_code_for", "report_error"]

#: Checked in order: the first class the error is an instance of wins (subclasses before bases).
EXIT_CODES: tuple[tuple[type[errors.Img2VidError], int], ...] = (
    (errors.CancelledError, 130),
    (errors.InvalidInputError, 2),
    (errors.ModelError, 2),
    (errors.UnprocessableError, 2),
    (errors.ConflictError, 2),
    (errors.AuthenticationError, 3),
    (errors.PermissionDeniedError, 3),
    (errors.InsufficientCreditsError, 3),
    (errors.NotFoundError, 4),
    (errors.DeadlineExceededError, 5),
    (errors.RateLimitedError, 6),
    (errors.ContentFilteredError, 6),
    (errors.ServiceError, 6),
    (errors.ConnectionFailedError, 6),
)
EXIT_BUG = 1
EXIT_CANCELLED = 130


def exit_code_for(error: BaseException) -> int:
    for cls, code in EXIT_CODES:
        if isinstance(error, cls):
            return code
    if isinstance(error, errors.Img2VidError):
        return 6
    if isinstance(error, KeyboardInterrupt):
        return EXIT_CANCELLED
    return EXIT_BUG


def report_error(error: BaseException, *, debug: bool = False, console: Console | None = None) -> int:
    """Print the error as one or two lines on stderr (a traceback too with ``debug``); return its exit code."""
    console = console or Console(stderr=True, highlight=False, soft_wrap=True)
    from ..redact import redact  # no key ever reaches the terminal, whatever raised

    if debug:  # the messages of every exception in the chain, a library's included, are masked too
        sys.stderr.write(redact("".join(traceback.format_exception(error))))

    code = exit_code_for(error)
    if isinstance(error, KeyboardInterrupt):
        console.print("cancelled", markup=False)
    elif isinstance(error, errors.Img2VidError):
        console.print(redact(f"error: {error.message}"), markup=False)
        if error.details:
            console.print(redact("  " + "; ".join(error.details)), markup=False)
    else:
        console.print(redact(f"internal error: {type(error).__name__}: {error}"), markup=False)
        if not debug:
            console.print("  run again with --debug for the traceback, and report it", markup=False)
    return code
