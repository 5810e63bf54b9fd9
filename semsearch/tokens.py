"""Counting tokens the way the embedding model will: the interface the chunker needs, and two counters.

:class:`HFTokenCounter` wraps the model's own (fast) tokenizer; :class:`WordTokenCounter` counts
words, for tests and the fake model. Nothing heavy is imported here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Protocol

Span = tuple[int, int]


class TokenCounter(Protocol):
    """Counts tokens the way the embedding model will see them (without special tokens).

    A counter may also have ``additive = True``, promising that texts joined by plain whitespace count
    as the sum of their parts; :func:`chunk_document` then trusts its sums instead of counting every
    assembled chunk again.
    """

    def count(self, texts: Sequence[str]) -> list[int]:
        """The number of tokens in each text."""
        ...

    def windows(self, text: str, max_tokens: int, overlap_tokens: int) -> list[Span]:
        """Character spans covering ``text``, each at most ``max_tokens`` tokens.

        Consecutive windows overlap by about ``overlap_tokens`` tokens.
        """
        ...




# --------------------------------------------------------------------------------------------------
# Token counters


class WordTokenCounter:
    """Counts words and punctuation marks as tokens: deterministic and free, for tests and the fake model."""

    _TOKEN = re.compile(r"\w+|[^\w\s]")
    additive = True  # no token spans whitespace

    def count(self, texts: Sequence[str]) -> list[int]:
        """The number of words and punctuation marks in each text."""
        return [sum(1 for _ in self._TOKEN.finditer(text)) for text in texts]

    def windows(self, text: str, max_tokens: int, overlap_tokens: int) -> list[Span]:
        """Spans of at most ``max_tokens`` words, overlapping by ``overlap_tokens`` words."""
        offsets = [m.span() for m in self._TOKEN.finditer(text)]
        return _token_windows(text, offsets, None, max_tokens, overlap_tokens)


class HFTokenCounter:
    """Counts tokens with a Hugging Face fast tokenizer.

    Accepts a ``tokenizers.Tokenizer`` or a ``transformers`` fast tokenizer. The tokenizer is copied
    with truncation and padding turned off, so counts are true lengths and the caller's tokenizer is
    left as it was.
    """

    def __init__(self, tokenizer: Any):
        backend = getattr(tokenizer, "backend_tokenizer", tokenizer)
        if not (hasattr(backend, "encode_batch") and hasattr(backend, "to_str")):
            raise TypeError(
                f"HFTokenCounter needs a Hugging Face fast tokenizer, not {type(tokenizer).__name__}; "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        copy = type(backend).from_str(backend.to_str())
        copy.no_truncation()
        copy.no_padding()
        self._tokenizer = copy
        self.additive = _splits_on_whitespace(copy)

    def count(self, texts: Sequence[str]) -> list[int]:
        """The number of tokens in each text, counted in one batch."""
        if not texts:
            return []
        # encode_batch_fast (tokenizers >= 0.20) skips the character offsets, which counting never needs.
        encode = getattr(self._tokenizer, "encode_batch_fast", self._tokenizer.encode_batch)
        return [len(encoding.ids) for encoding in encode(list(texts), add_special_tokens=False)]

    def windows(self, text: str, max_tokens: int, overlap_tokens: int) -> list[Span]:
        """Spans of at most ``max_tokens`` tokens that start and end between words where possible."""
        encoding = self._tokenizer.encode(text, add_special_tokens=False)
        return _token_windows(text, encoding.offsets, encoding.word_ids, max_tokens, overlap_tokens)


# Tokenizers that cut text into words at whitespace first and then tokenize each word on its own,
# with normalizers that work character by character: joining texts with a space adds no tokens.
_ADDITIVE_MODELS = frozenset({"WordPiece", "WordLevel"})
_ADDITIVE_PRE_TOKENIZERS = frozenset({"BertPreTokenizer", "Whitespace", "WhitespaceSplit"})
_ADDITIVE_NORMALIZERS = frozenset(
    {"NoneType", "BertNormalizer", "Lowercase", "NFC", "NFD", "NFKC", "NFKD", "StripAccents"}
)


def _splits_on_whitespace(tokenizer: Any) -> bool:
    return (
        type(tokenizer.model).__name__ in _ADDITIVE_MODELS
        and type(tokenizer.pre_tokenizer).__name__ in _ADDITIVE_PRE_TOKENIZERS
        and type(tokenizer.normalizer).__name__ in _ADDITIVE_NORMALIZERS
    )


def _token_windows(
    text: str,
    offsets: Sequence[Span],
    word_ids: Sequence[int | None] | None,
    max_tokens: int,
    overlap_tokens: int,
) -> list[Span]:
    """Windows over tokens with the given character offsets, cut only where a new word starts.

    Cutting inside a word would make the pieces tokenize differently from the whole.
    """
    n = len(offsets)
    if n <= max_tokens:
        return [(0, len(text))]
    max_tokens = max(1, max_tokens)
    step_back = min(overlap_tokens, max_tokens - 1)

    def word_start(i: int) -> bool:
        return word_ids is None or word_ids[i] is None or word_ids[i] != word_ids[i - 1]

    spans: list[Span] = []
    first = 0  # first token of the current window
    start = 0
    while True:
        stop = min(first + max_tokens, n)  # one past the last token
        if stop < n:
            cut = stop
            while cut > first + 1 and not word_start(cut):
                cut -= 1
            if cut > first + 1 or word_start(cut):
                stop = cut
        end = len(text) if stop == n else offsets[stop - 1][1]
        spans.append((start, end))
        if stop == n:
            return spans
        following = max(stop - step_back, first + 1)
        back = following
        while back > first + 1 and not word_start(back):
            back -= 1
        ahead = following
        while ahead < stop and not word_start(ahead):
            ahead += 1
        following = back if word_start(back) else ahead
        # Start no later than where this window ended, so characters between tokens are not lost.
        start = min(offsets[following][0], end)
        first = following
