"""How relevant a hit is, as a number a person can read: a value in [0, 1] that estimates how
often a hit like it is relevant.

A hit's ``score`` is whatever its mode ranks by: a cosine (semantic), a BM25 sum that grows with
the query's length (keyword), or a sum of per-query z-scores (hybrid, where the best hit of every
query scores about the same, however poor the match). None of them says how good a match is.
``relevance`` does, from what a hit is like rather than where it ranks:

- its **cosine** similarity to the query (semantic and hybrid search);
- its **keyword share**: its BM25 score over the query's *whole-query score*, the BM25 a chunk of
  average length holding each query word once would get (the sum of the words' IDFs), so 1.0
  is about "holds every query word" (keyword search), with the query's length in words (a
  relevant text holds a smaller share of a long query);
- in hybrid search, its **fused score** (the default fusion's sum of z-scores, capped at 3): how
  far it stands above the query's top 100 chunks on both sides at once.

Each mode maps these through a logistic curve, ``1 / (1 + exp(-(b + w·x)))``, fitted by
``benchmarks/calibrate.py`` on the judged queries of five BEIR collections (SciFact, Cranfield,
CISI, Medline, ADI) with the bundled all-MiniLM-L6-v2 model, each hit weighing the same. A
relevance of 0.6 means that, over those collections, about 60% of hits with those signals were
judged relevant (above about 0.7 there are few hits, and fewer were relevant than the value says).
Documents nobody judged count as not relevant, as trec_eval counts them; and a
collection with many relevant documents per query (Medline) is under-estimated while one with
one or two (SciFact) is over-estimated: docs/quality.md#relevance has the reliability tables,
each collection checked with curves fitted on the other four. It is read from the hit itself and
from the fixed window of 100 chunks the fusion scales by, never from the limit or the rank, so
a hit keeps it whatever the limit, the grouping or a reranker, and the values down a hybrid
result list fall nearly but not strictly in rank order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from semsearch.types import Mode


@dataclass(frozen=True)
class Signals:
    """What a hit's relevance is read from (``None``: not known for the mode)."""

    cosine: float | None = None
    keyword_share: float | None = None
    query_words: int | None = None  # the query's keyword terms (keyword and hybrid search)
    fused: float | None = None  # hybrid search with the default fusion (convex, z-scores) only


FUSED_CAP = 3.0  # a fused score above this says no more (held out, capping at 3 fitted best: quality.md)


def inputs(signals: Signals) -> dict[str, float]:
    """The values the curves weigh, by name (missing signals count as 0)."""
    return {
        "cosine": signals.cosine or 0.0,
        "keyword_share": signals.keyword_share or 0.0,
        "log_query_words": math.log(max(signals.query_words or 1, 1)),
        "fused": min(signals.fused or 0.0, FUSED_CAP),
    }


@dataclass(frozen=True)
class Curve:
    """``1 / (1 + exp(-(intercept + Σ weight × input)))``, over the :func:`inputs` of a hit."""

    intercept: float
    cosine: float = 0.0
    keyword_share: float = 0.0
    log_query_words: float = 0.0
    fused: float = 0.0


# Written by: .venv/bin/python benchmarks/calibrate.py --write
CURVES: dict[str, Curve] = {
    "semantic": Curve(intercept=-5.8290, cosine=7.9299),
    "keyword": Curve(intercept=-5.5288, keyword_share=2.9503, log_query_words=1.0495),
    "hybrid": Curve(intercept=-4.6235, cosine=3.5066, fused=0.9015),
    "hybrid-unfused": Curve(intercept=-5.0347, cosine=6.1916, keyword_share=0.7491),
}
# "hybrid-unfused": hybrid search with other fusion settings (reciprocal rank fusion, min-max),
# whose scores are on another scale: cosine and keyword share only.
FEATURES: dict[str, tuple[str, ...]] = {  # what each curve weighs (benchmarks/calibrate.py fits these)
    "semantic": ("cosine",),
    "keyword": ("keyword_share", "log_query_words"),
    "hybrid": ("cosine", "fused"),
    "hybrid-unfused": ("cosine", "keyword_share"),
}


def relevance(mode: Mode, signals: Signals, curves: dict[str, Curve] | None = None) -> float:
    """The hit's relevance in [0, 1] for a search in ``mode``."""
    curves = curves or CURVES
    curve = curves["hybrid-unfused"] if mode == "hybrid" and signals.fused is None else curves[mode]
    values = inputs(signals)
    value = curve.intercept + sum(getattr(curve, name) * values[name] for name in values)
    return 1.0 / (1.0 + math.exp(-value)) if value > -700 else 0.0
