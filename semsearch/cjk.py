"""Chinese, Japanese and Korean text as keyword tokens: overlapping pairs of characters.

FTS5's unicode61 tokenizer ends a word at a space or a punctuation mark. Chinese and Japanese put
no spaces between words, so a whole clause becomes one token, and a keyword query matches only
that whole clause: in practice, nothing. Korean does separate words, but each carries its
particles (검색은, 검색을, 검색이). As Lucene's CJKAnalyzer does, a *run* of CJK characters is indexed
as its overlapping bigrams (数据库 → 数据 据库); a query word of two characters or more is looked for
as its bigrams, which every text holding that word holds too. Most Chinese words are two
characters long, which a trigram index (FTS5's other tokenizer) could not find by MATCH at all.

Each run also keeps its last character alone (数据库 → 数据 据库 库), so every character of a run
starts exactly one token and a run of *n* characters weighs *n* tokens in BM25's length
normalisation, as *n* words would. A one-character query (猫) is then a prefix query (``"猫"*``: every
token starting with 猫), which finds the character wherever it occurs.

Text without a CJK character is returned exactly as given, so English stemming, every other
script and every existing BM25 score stay as they were. The store indexes :func:`keyword_text`
of each chunk (SQLite calls it from the FTS5 triggers); :func:`query_terms` is the query side.
"""

from __future__ import annotations

import re

# Han (with its extensions and compatibility ideographs), hiragana, katakana (full and half width),
# bopomofo and hangul: the characters unicode61 treats as letters and that are written without
# spaces between words. Left out are the few code points in these blocks that unicode61 treats as
# separators (combining and spacing sound marks U+3099-309C, ゠ U+30A0, ・ U+30FB), so that a
# bigram is always exactly one FTS5 token (tests/test_cjk.py checks every code point).
_CJK_CLASS = (
    "\u1100-\u11ff"  # hangul jamo
    "\u3005-\u3007"  # 々 〆 〇
    "\u3040-\u3098\u309d-\u309f"  # hiragana
    "\u30a1-\u30fa\u30fc-\u30ff"  # katakana
    "\u3100-\u312f\u31a0-\u31bf"  # bopomofo
    "\u3130-\u318f"  # hangul compatibility jamo
    "\u31f0-\u31ff"  # katakana phonetic extensions
    "\u3400-\u4dbf\u4e00-\u9fff"  # CJK unified ideographs and extension A
    "\ua960-\ua97f\uac00-\ud7ff"  # hangul jamo extended, syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\uff66-\uffdc"  # half-width katakana and hangul
    "\U00020000-\U0003134f"  # CJK extensions B to H
)
_RUN = re.compile(f"[{_CJK_CLASS}]+")
_HAS_CJK = re.compile(f"[{_CJK_CLASS}]")


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds any CJK character."""
    return _HAS_CJK.search(text) is not None


def run_tokens(run: str) -> list[str]:
    """The tokens indexed for one run of CJK characters: its bigrams, then its last character."""
    return [run[i : i + 2] for i in range(len(run) - 1)] + [run[-1:]]


def keyword_text(text: str | None) -> str | None:
    """``text`` as the keyword index sees it: each CJK run replaced by its tokens, spaced apart.

    Returned unchanged (the same object) when there is no CJK character in it; ``None`` stays
    ``None`` (SQLite passes NULL through).
    """
    if text is None or _HAS_CJK.search(text) is None:
        return text
    return _RUN.sub(lambda match: " " + " ".join(run_tokens(match.group())) + " ", text)


def query_terms(word: str) -> list[str]:
    """A query word's keyword terms: the word itself unless it holds CJK characters; otherwise
    its other letters as words, each CJK run's bigrams, and a one-character run as a prefix term
    (``"猫*"``; see :func:`semsearch.bm25.match_expression`)."""
    if _HAS_CJK.search(word) is None:
        return [word]
    terms: list[str] = []
    position = 0
    for match in _RUN.finditer(word):
        if match.start() > position:
            terms.append(word[position : match.start()])
        run = match.group()
        terms.extend([run + "*"] if len(run) == 1 else [run[i : i + 2] for i in range(len(run) - 1)])
        position = match.end()
    if position < len(word):
        terms.append(word[position:])
    return terms


def runs(text: str) -> list[str]:
    """The CJK runs of ``text``, in order (for marking them in snippets)."""
    return _RUN.findall(text)


def is_prefix(term: str) -> bool:
    """Whether a keyword term is a prefix term: one CJK character and ``*`` (``猫*``)."""
    return len(term) == 2 and term[1] == "*" and _HAS_CJK.match(term) is not None
