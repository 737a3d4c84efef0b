"""TF-IDF features: the classic 'weak human' baseline's representation (scikit-learn)."""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class TfidfFeatures:
    """Word 1–2-gram TF-IDF (sublinear tf, at most ``max_features`` terms), fitted on the texts it is given.

    The vocabulary is fitted on the whole task pool's *texts* (no labels), so every split shares one
    feature space; ``transform`` returns a float32 CSR matrix of shape (n, n_terms).
    """

    def __init__(self, *, max_features: int = 20000, min_df: int = 2) -> None:
        self.max_features = max_features
        self.min_df = min_df
        self.model_calls_ = 0

    def transform(self, texts: list[str]) -> sp.csr_matrix:
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, max_features=self.max_features,
                                     min_df=min(self.min_df, len(texts)), dtype=np.float32)
        self.model_calls_ += 1
        return vectorizer.fit_transform(texts).tocsr()
