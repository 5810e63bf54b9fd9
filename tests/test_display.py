"""Snippets and other text for people."""

from semsearch.display import display_path, human_size, snippet


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
