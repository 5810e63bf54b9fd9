"""What every command shares: the settings the group passes down, ``--index`` and the error boundary.

:mod:`semsearch.cli` and :mod:`semsearch.cli_eval` both import this module and it imports neither,
so the command modules can be imported in any order.
"""

from __future__ import annotations

import functools
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


def reports_errors(command: Callable) -> Callable:
    """Turn library errors into one clean line instead of a traceback."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SemsearchError as error:
            raise click.ClickException(str(error)) from None
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(130)

    return wrapper
