"""How relevant a hit is, as a number a person can read: a value in [0, 1] that estimates how
often a hit like it is relevant.

A hit's ``score`` is whatever its mode ranks by: a cosine (semantic), a BM25 sum that grows with
the query's length (keyword), or a sum of per-query z-scores (hybrid, where the best hit of every
query scores about the same, however poor the match). None of them says how good a match is.
``relevance`` does, from what a hit is like rather than where it ranks:

- its **cosine** similarity to the query (semantic and hybrid search);
- its **keyword share**: its BM25 score over the query's *whole-query score*, the BM25 a chunk of
  average length holding each query word once would get (the sum of the words' IDFs), so 1.0
  is about "holds every query word", whatever the query's length (keyword and hybrid search).

Each mode maps these through a logistic curve, ``1 / (1 + exp(-(b + w·x)))``, fitted by
``benchmarks/calibrate.py`` on the judged queries of five BEIR collections (SciFact, Cranfield,
CISI, Medline, ADI) with the bundled all-MiniLM-L6-v2 model, each collection weighing the same.
A relevance of 0.8 means that, in that fit, about 80% of hits with those signals were judged
relevant. Documents nobody judged count as not relevant, as trec_eval counts them, so values
err low; and collections differ (docs/quality.md has the reliability tables, each collection
checked with a curve fitted on the other four). It depends on the hit alone, not on the ranking,
so a reranked hit keeps it, values compare across queries of one index, and the values down a
hybrid result list need not fall in rank order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from semsearch.types import Mode


@dataclass(frozen=True)
class Signals:
    """What a hit's relevance is read from (``None``: not used by the mode)."""

    cosine: float | None = None
    keyword_share: float | None = None


@dataclass(frozen=True)
class Curve:
    """``1 / (1 + exp(-(intercept + cosine_weight * cosine + keyword_weight * keyword_share)))``."""

    intercept: float
    cosine_weight: float = 0.0
    keyword_weight: float = 0.0


# Written by: .venv/bin/python benchmarks/calibrate.py --write (see docs/quality.md#relevance)
CURVES: dict[str, Curve] = {
    "semantic": Curve(intercept=0.0, cosine_weight=0.0),
    "keyword": Curve(intercept=0.0, keyword_weight=0.0),
    "hybrid": Curve(intercept=0.0, cosine_weight=0.0, keyword_weight=0.0),
}


def relevance(mode: Mode, signals: Signals, curves: dict[str, Curve] | None = None) -> float:
    """The hit's relevance in [0, 1] for a search in ``mode``."""
    curve = (curves or CURVES)[mode]
    value = curve.intercept
    if curve.cosine_weight:
        value += curve.cosine_weight * (signals.cosine or 0.0)
    if curve.keyword_weight:
        value += curve.keyword_weight * (signals.keyword_share or 0.0)
    return 1.0 / (1.0 + math.exp(-value)) if value > -700 else 0.0
