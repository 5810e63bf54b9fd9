"""Snippets and other text for people."""

from semsearch.display import display_path, display_text, human_size, snippet, spelled_out


def test_snippet_centres_on_the_query_words_and_marks_them():
    text = "Intro words. " * 40 + "\n\nThe sourdough starter needs feeding daily.\n\n" + "Outro words. " * 40
    result = snippet(text, "feeding the starter", width=120, emphasise=lambda w: f"[{w}]")
    assert "[starter]" in result and "[feeding]" in result
    assert result.startswith("…") and result.endswith("…")
    assert " · " in result  # the paragraph break is visible


def test_snippet_of_short_text_is_whole():
    assert snippet("Short text.", "nothing matches", width=100) == "Short text."


def test_paths_and_sizes():
    assert display_path("/a/b/c.md", cwd="/a") == "b/c.md"
    assert display_path("/x/c.md", cwd="/a") == "/x/c.md"
    assert display_path("doc-id-7", cwd="/a") == "doc-id-7"
    assert human_size(512) == "512 B" and human_size(3 * 1024 * 1024) == "3.0 MB"


def test_snippet_drops_adornment_lines():
    text = "The Proposed Solution\n=====================\n\nIt is proposed to allow conditional list literals."
    assert snippet(text, "list literals", width=200) == (
        "The Proposed Solution · It is proposed to allow conditional list literals."
    )


def test_control_characters_never_reach_the_terminal_raw():
    # A file name is spelled out as `ls -b` shows it: one line, nothing a terminal acts on.
    assert display_path("/a/new\nline\t\x1b]0;title\x07.md", cwd="/a") == "new\\nline\\t\\x1b]0;title\\x07.md"
    assert spelled_out("/x/\x9bbad\x7f.txt") == "/x/\\x9bbad\\x7f.txt"
    # Text (titles, headings, snippets): a log's colours and a window-title string are dropped,
    # other control characters shown as spaces.
    assert display_text("\x1b[1;31mBuild\x1b[0m failed\tat\nstep\x1b]0;owned\x07 3\x00") == "Build failed at step 3 "
    assert display_text("plain title") == "plain title"
    log = "step 1 \x1b[32mok\x1b[0m\n\nstep 2 \x1b[31mfailed\x1b[0m: disk \x1b]8;;http://x\x1b\\full\x1b]8;;\x1b\\"
    shown = snippet(log, "failed", width=200, emphasise=lambda w: f"[{w}]")
    assert shown == "step 1 ok · step 2 [failed]: disk full"
