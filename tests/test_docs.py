"""Documentation stays true: every command and option is in docs/cli.md, every doc link resolves."""

from __future__ import annotations

import re
from pathlib import Path

import click
import pytest

from semsearch.cli import cli

REPO = Path(__file__).resolve().parent.parent
CLI_DOC = (REPO / "docs" / "cli.md").read_text()


def command_names() -> list[str]:
    return sorted(cli.commands)


@pytest.mark.parametrize("name", command_names())
def test_every_command_is_documented_with_all_its_options(name):
    command = cli.commands[name]
    assert f"## semsearch {name}" in CLI_DOC, f"docs/cli.md has no section for {name}"
    section = CLI_DOC.split(f"## semsearch {name}", 1)[1].split("\n## ", 1)[0]
    for parameter in command.params:
        if isinstance(parameter, click.Option):
            longest = max(parameter.opts, key=len)
            assert longest in section, f"{name}: option {longest} is not documented"
    assert command.help, f"{name} has no help text"


def test_global_options_are_documented():
    for parameter in cli.params:
        if isinstance(parameter, click.Option) and "--help" not in parameter.opts:
            assert max(parameter.opts, key=len) in CLI_DOC


@pytest.mark.parametrize("document", ["README.md", *[str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")]])
def test_relative_links_resolve(document):
    text = (REPO / document).read_text()
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text):
        assert (REPO / document).parent.joinpath(target).exists(), f"{document} links to missing {target}"
