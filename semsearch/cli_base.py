"""What every command shares: the settings the group passes down, ``--index`` and the error boundary.

:mod:`semsearch.cli` and :mod:`semsearch.cli_eval` both import this module and it imports neither,
so the command modules can be imported in any order.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from semsearch.errors import SemsearchError
from semsearch.location import ENV_VAR


class Settings:
    """What the group's options decided, passed to every command."""

    def __init__(self, index: str | None) -> None:
        self.index = index


pass_settings = click.make_pass_decorator(Settings, ensure=True)


def index_option(
    command: Callable | None = None, *, envvar: str | None = None, help: str | None = None
) -> Callable:
    """``--index DIR``, accepted before or after the command name (after wins)."""
    option = click.option(
        "--index",
        "index_dir",
        type=click.Path(file_okay=False, path_type=str),
        envvar=envvar,
        help=help
        or f"Index folder. Default: ${ENV_VAR}, else the nearest .semsearch/ folder at or above "
        "the current directory, else the per-user index.",
    )
    return option(command) if command is not None else option


DEBUG_VAR = "SEMSEARCH_DEBUG"


def reports_errors(command: Callable) -> Callable:
    """The error boundary of every command: any failure becomes one line on stderr and exit
    status 1, never a traceback.

    Library errors carry their own message, which says what to do; a file-system error names the
    file; anything else is a bug, reported as one (``$SEMSEARCH_DEBUG`` shows its traceback).
    Ctrl-C exits with 130; output piped to a reader that stopped reading (``| head``) ends the
    command quietly with 141, as SIGPIPE would. Click's own exits (usage mistakes, ``--help``)
    pass through.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)
        except BrokenPipeError:
            # Nobody reads what is left; flushing it at exit would fail again, so it goes nowhere.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            sys.exit(141)
        except Exception as error:
            cause = _library_error(error)
            if cause is None and os.environ.get(DEBUG_VAR):
                raise
            message = str(cause) if cause is not None else _unexpected(error)
            raise click.ClickException(" ".join(message.split())) from None

    return wrapper


def _library_error(error: BaseException | None) -> SemsearchError | None:
    """The library error behind ``error``: itself, or one it was raised while handling (SQLite
    notices a full disk, then so does the cleanup that saves the vector file)."""
    while error is not None and not isinstance(error, SemsearchError):
        error = error.__context__
    return error


def _unexpected(error: Exception) -> str:
    """What went wrong, for an error the library did not raise on purpose, and what to do."""
    if not isinstance(error, OSError):
        return (
            f"unexpected {type(error).__name__}: {error}; this is a bug in semsearch, please report "
            f"it with the command you ran (set {DEBUG_VAR}=1 to see the traceback)"
        )
    problem = f"{error.filename}: {error.strerror}" if error.filename else (error.strerror or str(error))
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{problem}; free some disk space and try again"
    if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{problem}; check that you may write there, or use another --index"
    return f"{problem}; check that path and try again"
