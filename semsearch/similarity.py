""""More like this": which documents are most like a given one.

A document is many chunk vectors; a search takes one. The document is summed up as the mean of
its chunk vectors (normalised again: the *centroid*), which is searched like a query, and each
other document scores by its chunk nearest that centroid (max-pooling, as grouped search does).
Measured against a best chunk-to-chunk match, and against ranking by centroid-to-centroid
cosine, on documents whose relatedness is known (docs/quality.md#similar-documents): the centroid
is as good or better on long documents and costs one vector search, where a chunk-to-chunk match
costs one search per chunk of the document and follows whichever single passage happens to
match (among PEPs, most often the boilerplate "Copyright" section).
"""

from __future__ import annotations

import numpy as np


def centroid(vectors: np.ndarray) -> np.ndarray:
    """The normalised mean of L2-normalised vectors (one row each): a whole document as one vector.

    A document whose chunks cancel out (the mean is zero) falls back to its first chunk.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or not len(vectors):
        raise ValueError("a centroid needs at least one vector")
    mean = vectors.mean(axis=0)
    norm = float(np.linalg.norm(mean))
    if norm < 1e-6:
        mean, norm = vectors[0], float(np.linalg.norm(vectors[0])) or 1.0
    return np.ascontiguousarray(mean / norm, dtype=np.float32)
