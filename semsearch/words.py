"""The words of a query, as keyword search and the snippets that show its hits read them.

Light on purpose (standard library and :mod:`semsearch.cjk` only): the CLI prints hits with it,
also hits a running server sent (see :mod:`semsearch.client`), without importing the search stack.
"""

from __future__ import annotations

import re

from semsearch import cjk

# FTS5's unicode61 tokenizer splits on anything that is not a letter, digit or private-use
# character; underscores split words there too, so they do here.
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# Common English function words: they carry no topic and only slow BM25 down.
STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before being
    below between both but by can could did do does doing down during each few for from further had
    has have having he her here hers herself him himself his how i if in into is it its itself just
    me more most my myself no nor not now of off on once only or other our ours ourselves out over
    own same she should so some such than that the their theirs them themselves then there these
    they this those through to too under until up very was we were what when where which while who
    whom why will with would you your yours yourself yourselves""".split()
)


def keyword_terms(query: str) -> list[str]:
    """The words of a query that keyword search looks for, lower-cased and each once.

    English stopwords are dropped unless nothing else is left. Words are split the way FTS5's
    unicode61 tokenizer splits them (letters and digits of any script), so Greek, Cyrillic or
    accented words pass through whole. Chinese, Japanese and Korean runs become the bigrams the
    index holds (see :mod:`semsearch.cjk`): 数据库 → 数据, 据库; a lone character a prefix term (猫*).
    """
    words = [word.lower() for word in _WORD.findall(query)]
    content = [word for word in words if word not in STOPWORDS]
    return list(dict.fromkeys(term for word in content or words for term in cjk.query_terms(word)))
