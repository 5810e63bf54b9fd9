"""Pseudo-relevance feedback, tried and not kept (docs/quality.md, "Pseudo-relevance feedback").

    .venv/bin/python benchmarks/prf.py scifact feedback=0                         # no feedback at all
    .venv/bin/python benchmarks/prf.py scifact                                    # as shipped (hybrid: Rocchio)
    .venv/bin/python benchmarks/prf.py scifact rocchio_k=5 rocchio_b=0.3 modes=semantic,hybrid
    .venv/bin/python benchmarks/prf.py scifact rm3_fb=5 rm3_terms=20 rm3_l=0.3 modes=keyword,hybrid

Dense side (Rocchio): the query vector plus ``rocchio_b`` times the mean vector of the first
``rocchio_k`` semantic hits, normalised, searched again. Keyword side (RM3-style): the ``rm3_terms``
tokens most probable in the first ``rm3_fb`` keyword hits (each hit weighted by its share of their
BM25, each token by its share of the hit's tokens; tokenised by FTS5 itself, so stemmed as the
index is), leaving out the query's own tokens, stopwords, numbers and tokens in more than
``rm3_maxdf`` of the chunks; a chunk's score becomes its BM25 plus ``rm3_l`` times its BM25 for
those tokens. ``feedback=0`` turns off the feedback hybrid search ships with (FusionSettings.feedback_depth;
the semantic side of hybrid only). The experiments are patched into
:class:`semsearch.retrieval.Retriever` for this process only;
the dataset's index is the one ``semsearch eval`` keeps in the user cache (made first if missing).
"""
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("SEMSEARCH_DATA", REPO.parent / "shared" / "data"))

import numpy as np  # noqa: E402
import semsearch  # noqa: E402
import semsearch.retrieval as R  # noqa: E402
from semsearch.evaluation import default_index_dir, evaluate, load_dataset  # noqa: E402

ds_name = sys.argv[1]
opts = dict(a.split("=") for a in sys.argv[2:] if "=" in a)
modes = tuple(opts.pop("modes", "semantic,keyword,hybrid").split(","))
RK, RB = int(opts.get("rocchio_k", 0)), float(opts.get("rocchio_b", 0.0))
FB, TERMS, LAM = int(opts.get("rm3_fb", 0)), int(opts.get("rm3_terms", 10)), float(opts.get("rm3_l", 0.5))
MAXDF = float(opts.get("rm3_maxdf", 0.1))
SHIPPED = R.FusionSettings() if opts.get("feedback", "1") != "0" else R.FusionSettings(feedback_depth=0)

orig_semantic, orig_keyword = R.Retriever.semantic, R.Retriever.keyword


def semantic(self, query, depth, where):
    if not RK or getattr(self, "_fed", None) == query:
        return orig_semantic(self, query, depth, where)
    first = orig_semantic(self, query, max(depth, RK), where)
    ids = np.array([i for i, _ in first[:RK]], dtype=np.int64)
    found, vecs = self._store.vectors_of(ids)
    q = self._vector(query)
    new = q + RB * vecs.mean(0)
    new = (new / np.linalg.norm(new)).astype(np.float32)
    self._query_vectors[query] = new
    self._fed = query
    return orig_semantic(self, query, depth, where)


def expansion(self, query, where):
    cache = self.__dict__.setdefault("_exp", {})
    if query in cache:
        return cache[query]
    base = orig_keyword(self, query, FB, where)
    terms, stats = self._keyword_terms(query)
    own = {t for w in terms for t in (stats.tokens.get(w, ()) if stats else ())}
    expr = None
    if base and stats:
        ids = [i for i, _ in base]
        scores = np.array([s for _, s in base])
        weights = scores / scores.sum()
        with self._store._connections.reading() as c:
            c.execute("DELETE FROM temp.scratch_rows")
            rows = c.execute(f"SELECT id, context, text FROM chunks WHERE id IN ({','.join(map(str, ids))})").fetchall()
            c.executemany("INSERT INTO temp.scratch_rows(rowid, context, text) VALUES (?, ?, ?)", [tuple(r) for r in rows])
            counts = c.execute("SELECT doc, term, count(*) FROM temp.scratch_terms GROUP BY doc, term").fetchall()
            c.execute("DELETE FROM temp.scratch_rows")
            lengths = {}
            for doc, term, n in counts:
                lengths[doc] = lengths.get(doc, 0) + n
            w = dict(zip(ids, weights))
            score = {}
            for doc, term, n in counts:
                if term in own or term in R.STOPWORDS or len(term) < 3 or term.isdigit():
                    continue
                score[term] = score.get(term, 0.0) + w.get(doc, 0.0) * n / lengths[doc]
            chosen = []
            for term, _ in sorted(score.items(), key=lambda kv: -kv[1]):
                df = c.exec_driver_sql("SELECT doc FROM temp.chunk_terms WHERE term = ?", (term,)).scalar() or 0
                if df / max(stats.rows, 1) <= MAXDF:
                    chosen.append(term)
                if len(chosen) >= TERMS:
                    break
            c.commit()
        if chosen:
            expr = " OR ".join('"' + t.replace('"', '') + '"' for t in chosen)
    cache[query] = expr
    return expr


def keyword(self, query, depth, where, *, only=None):
    base = orig_keyword(self, query, depth if only is None else depth, where, only=only)
    if not FB:
        return base
    expr = expansion(self, query, where)
    if expr is None:
        return base
    w = self.settings.keyword_weights
    extra = self._store.keyword_search(expr, depth if only is None else len(only), where, weights=w, only=only)
    total = {i: s for i, s in base}
    for i, s in extra:
        total[i] = total.get(i, 0.0) + LAM * s
    return sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:depth]


R.Retriever.semantic, R.Retriever.keyword = semantic, keyword
dataset = load_dataset(DATA / "beir" / ds_name)
started = time.time()
with semsearch.open(default_index_dir(dataset.path), fusion=SHIPPED) as engine:
    ev = evaluate(dataset, modes=modes, engine=engine)
print(ds_name, sys.argv[2:], " ".join(f"{r.mode}={r.overall.ndcg_at_10:.4f}" for r in ev.results), f"({time.time()-started:.0f}s)", flush=True)
