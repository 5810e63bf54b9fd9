"""`semsearch mcp` end to end: the MCP SDK's own client starts the server over stdio, lists its
tools and calls each; answers cite path:line; mistakes come back as tool errors."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import anyio
import pytest

from processes import FAKE_CLI, Process

NOTES = {
    "garden/tomatoes.md": "# Growing tomatoes\n\nTomatoes need full sun and deep watering.\n\n"
    "## Pests\n\nAphids and hornworms attack tomato plants; pick hornworms by hand.\n",
    "kitchen/bread.md": "# Baking bread\n\nKnead the dough, let the yeast rise, bake in a hot oven.\n",
    "kitchen/rolls.md": "# Bread rolls\n\nShape the dough into rolls and bake them in a hot oven.\n",
    "sea/tides.md": "# Tides\n\nThe moon pulls the oceans and makes tides twice a day.\n",
}


def session_run(command: list[str], calls):
    """Start the server with the SDK's stdio client, run ``calls(session)``, return its result."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    # The SDK passes only a few safe variables to the server; these the tests need as well.
    passed = {key: os.environ[key] for key in ("SEMSEARCH_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
              if key in os.environ}
    parameters = StdioServerParameters(command=command[0], args=command[1:], env=passed)

    async def main():
        with open(os.devnull, "w") as quiet:
            async with stdio_client(parameters, errlog=quiet) as (read, write):
                async with ClientSession(read, write) as session:
                    await session.initialize()
                    return await calls(session)

    return anyio.run(main)


def text_of(result) -> str:
    assert len(result.content) == 1 and result.content[0].type == "text"
    return result.content[0].text


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("mcp")
    notes = base / "notes"
    for name, text in NOTES.items():
        (notes / name).parent.mkdir(parents=True, exist_ok=True)
        (notes / name).write_text(text)
    index = base / "idx"
    process = Process([*FAKE_CLI, "--index", str(index), "index", str(notes)])
    assert process.finish() == 0, process.text()
    return index, notes


def test_tools_search_get_document_and_similar(index):
    index_dir, notes = index

    async def calls(session):
        tools = await session.list_tools()
        search = await session.call_tool("search", {"query": "hornworms on tomato plants", "limit": 2})
        document_id = re.search(r"\(document (\d+),", text_of(search)).group(1)
        document = await session.call_tool("get_document", {"document": document_id})
        by_path = await session.call_tool("get_document", {"document": str(notes / "garden/tomatoes.md")})
        similar = await session.call_tool("similar", {"document": str(notes / "kitchen/bread.md"), "limit": 1})
        keyword = await session.call_tool("search", {"query": "oven", "mode": "keyword", "type": ["md"]})
        return tools, search, document, by_path, similar, keyword

    tools, search, document, by_path, similar, keyword = session_run([*FAKE_CLI, "--index", str(index_dir), "mcp"], calls)
    assert {tool.name for tool in tools.tools} == {"search", "get_document", "similar"}
    assert all(tool.description for tool in tools.tools)
    assert not search.is_error
    answer = text_of(search)
    tomatoes = str((notes / "garden/tomatoes.md").resolve())
    # A citation an assistant can quote: path:start-end, the title and section, the document id.
    assert re.search(rf"^\[1\] {re.escape(tomatoes)}:\d+(-\d+)? — Growing tomatoes › Pests \(document \d+, score ", answer, re.M)
    assert "hornworms" in answer
    assert text_of(document) == text_of(by_path)
    assert text_of(document).startswith(f"Growing tomatoes\n{tomatoes} (document ")
    assert f"--- {tomatoes}:1" in text_of(document)
    assert "Documents like 'Baking bread'" in text_of(similar) and "rolls.md:" in text_of(similar)
    assert "bread.md:" not in text_of(similar).split("\n", 1)[1]  # itself left out
    assert "oven" in text_of(keyword)


def test_mistakes_are_tool_errors_and_the_server_goes_on(index):
    index_dir, _ = index

    async def calls(session):
        missing = await session.call_tool("get_document", {"document": "424242"})
        empty = await session.call_tool("search", {"query": "   "})
        too_many = await session.call_tool("search", {"query": "tides", "limit": 5000})
        still = await session.call_tool("search", {"query": "moon tides"})
        return missing, empty, too_many, still

    missing, empty, too_many, still = session_run([*FAKE_CLI, "--index", str(index_dir), "mcp"], calls)
    assert missing.is_error and "no document with id 424242" in text_of(missing)
    assert empty.is_error and "the query is empty" in text_of(empty)
    assert too_many.is_error and "limit" in text_of(too_many)
    assert "Traceback" not in text_of(missing) + text_of(empty) + text_of(too_many)
    assert not still.is_error and "tides.md:" in text_of(still)


def test_long_documents_come_in_pages(tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "long.txt").write_text("\n\n".join(f"Paragraph {i}. " + "words and more words " * 60 for i in range(40)))
    index = tmp_path / "idx"
    assert Process([*FAKE_CLI, "--index", str(index), "index", str(notes)]).finish() == 0

    async def calls(session):
        first = await session.call_tool("get_document", {"document": str(notes / "long.txt"), "max_chars": 5000})
        line = re.search(r"start_line=(\d+)", text_of(first)).group(1)
        second = await session.call_tool("get_document", {"document": str(notes / "long.txt"), "start_line": int(line),
                                                          "max_chars": 5000})
        return first, second

    first, second = session_run([*FAKE_CLI, "--index", str(index), "mcp"], calls)
    assert len(text_of(first)) < 6000 and "Paragraph 0." in text_of(first)
    assert "Paragraph 0." not in text_of(second) and "Paragraph" in text_of(second)


def test_a_missing_index_stops_the_server_with_one_line(tmp_path):
    process = Process([*FAKE_CLI, "--index", str(tmp_path / "none"), "mcp"])
    assert process.finish() == 1
    assert process.wait_for(r"^Error: no semsearch index", stream="err")


@pytest.mark.slow
def test_the_real_command_with_the_real_model(real_corpus_index):
    async def calls(session):
        return await session.call_tool("search", {"query": "how do I fix a flat tyre", "limit": 3})

    result = session_run([sys.executable, "-m", "semsearch", "--index", str(real_corpus_index), "mcp"], calls)
    assert not result.is_error
    assert re.search(r"^\[1\] \S+bicycle-flat-tyre\.md:\d+", text_of(result), re.M)
