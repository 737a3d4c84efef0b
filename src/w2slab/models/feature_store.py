"""A persistent, content-addressed store of text embeddings for one extractor setting.

Layout: ``<root>/chunk-<hash>.npy`` (float16, shape (m, d)) with ``<root>/chunk-<hash>.keys.npy`` (S16 text
digests, shape (m,)). Chunks are immutable and written atomically (vectors first, keys last), so concurrent
writers never clash and a killed writer leaves nothing that a reader would use. Reads memory-map the chunks.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..io import write_npy


class FeatureStore:
    """Embeddings keyed by text digest under ``root`` (one folder per model/layer/pooling/length setting)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self._index: dict[bytes, tuple[int, int]] = {}
        self._chunks: list[np.ndarray] = []
        self._seen: set[str] = set()

    def _refresh(self) -> None:
        if not self.root.is_dir():
            return
        for keys_file in sorted(self.root.glob("chunk-*.keys.npy")):
            stem = keys_file.name[: -len(".keys.npy")]
            if stem in self._seen:
                continue
            vectors = np.load(self.root / f"{stem}.npy", mmap_mode="r")
            keys = np.load(keys_file)
            chunk_id = len(self._chunks)
            self._chunks.append(vectors)
            for row, key in enumerate(keys.tolist()):
                self._index.setdefault(key, (chunk_id, row))
            self._seen.add(stem)

    def missing(self, digests: np.ndarray) -> np.ndarray:
        """Indices (into ``digests``) of texts with no stored vector yet."""
        self._refresh()
        return np.array([i for i, d in enumerate(digests.tolist()) if d not in self._index], dtype=np.int64)

    def put(self, digests: np.ndarray, vectors: np.ndarray) -> None:
        """Store ``vectors`` (float, shape (m, d)) for ``digests`` (S16, shape (m,)) as one new chunk."""
        if len(digests) == 0:
            return
        stem = "chunk-" + hashlib.sha256(digests.tobytes()).hexdigest()[:24]
        write_npy(self.root / f"{stem}.npy", np.asarray(vectors, dtype=np.float16))
        write_npy(self.root / f"{stem}.keys.npy", np.asarray(digests, dtype="S16"))

    def get(self, digests: np.ndarray) -> np.ndarray:
        """Vectors for ``digests`` as float32, shape (n, d); every digest must be stored."""
        self._refresh()
        locations = [self._index[d] for d in digests.tolist()]
        if not locations:
            return np.zeros((0, 0), dtype=np.float32)
        dim = self._chunks[locations[0][0]].shape[1]
        out = np.empty((len(locations), dim), dtype=np.float32)
        for i, (chunk_id, row) in enumerate(locations):
            out[i] = self._chunks[chunk_id][row]
        return out

    def __len__(self) -> int:
        self._refresh()
        return len(self._index)
