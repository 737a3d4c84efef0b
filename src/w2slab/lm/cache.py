"""The generation cache: every sample and every score computed once, whatever process asks.

One SQLite file, ``<cache>/lm/generations.sqlite``, in WAL mode: several sweep processes read and write it at
once; each batch is one transaction (all or nothing), and ``INSERT OR IGNORE`` on the content key means two
writers racing on one sample store it once. A sample's key hashes the model's identity (weights fingerprint,
never a path), the exact rendered prompt, every sampling setting, the seed and the sample index, so raising n
from 8 to 16 generates 8. Greedy samples drop seed and index from the key (they cannot change a greedy decode).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..io import open_sqlite
from ..paths import cache_dir
from .base import LM, Generation, GenerationRequest, Score, ScoreRequest

SCHEMA = """
CREATE TABLE IF NOT EXISTS generations (key TEXT PRIMARY KEY, model TEXT, text TEXT, prompt_tokens INTEGER,
    completion_tokens INTEGER, finish_reason TEXT, created REAL);
CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, model TEXT, logprob REAL, n_tokens INTEGER,
    greedy INTEGER, exact INTEGER, created REAL);
"""


def cache_file(cache: str | Path | None = None) -> Path:
    """``<cache>/lm/generations.sqlite``."""
    return cache_dir(cache) / "lm" / "generations.sqlite"


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class GenerationCache:
    """Samples and scores keyed by content in one SQLite file (``path``); safe for concurrent processes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None  # opened on first use; created on the first write

    @property
    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_sqlite(self.path, timeout_s=60, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(SCHEMA)
        return self._conn

    def get_generations(self, keys: Sequence[str]) -> dict[str, Generation]:
        """The stored samples among ``keys``."""
        found = {}
        for rows in self._select("generations", "key, text, prompt_tokens, completion_tokens, finish_reason", keys):
            for key, text, prompt_tokens, completion_tokens, reason in rows:
                found[key] = Generation(text, prompt_tokens, completion_tokens, reason)
        return found

    def put_generations(self, model: str, items: Iterable[tuple[str, Generation]]) -> None:
        """Store (key, sample) pairs in one transaction; a key stored already is kept as it was."""
        now = time.time()
        self._insert("INSERT OR IGNORE INTO generations VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(k, model, g.text, g.prompt_tokens, g.completion_tokens, g.finish_reason, now) for k, g in items])

    def get_scores(self, keys: Sequence[str]) -> dict[str, Score]:
        """The stored scores among ``keys``."""
        found = {}
        for rows in self._select("scores", "key, logprob, n_tokens, greedy, exact", keys):
            for key, logprob, n_tokens, greedy, exact in rows:
                found[key] = Score(logprob, n_tokens, bool(greedy), bool(exact))
        return found

    def put_scores(self, model: str, items: Iterable[tuple[str, Score]]) -> None:
        """Store (key, score) pairs in one transaction."""
        now = time.time()
        self._insert("INSERT OR IGNORE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?)",
                     [(k, model, s.logprob, s.n_tokens, int(s.greedy), int(s.exact), now) for k, s in items])

    def _select(self, table: str, columns: str, keys: Sequence[str]):
        if self._conn is None and not self.path.is_file():
            return  # nothing stored yet: do not create the file just to read it
        keys = list(keys)
        for start in range(0, len(keys), 500):
            chunk = keys[start: start + 500]
            marks = ",".join("?" * len(chunk))
            yield self._db.execute(f"SELECT {columns} FROM {table} WHERE key IN ({marks})", chunk).fetchall()

    def _insert(self, sql: str, rows: list[tuple]) -> None:
        if not rows:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(sql, rows)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def counts(self) -> dict[str, int]:
        """Rows per table: {"generations": n, "scores": m}."""
        return {t: self._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("generations", "scores")}

    def trim(self, *, older_than_days: float | None = None, dry_run: bool = False) -> int:
        """Delete entries created more than ``older_than_days`` ago (all with None); returns how many."""
        cutoff = time.time() - older_than_days * 86400 if older_than_days is not None else float("inf")
        n = sum(self._db.execute(f"SELECT COUNT(*) FROM {t} WHERE created < ?", (cutoff,)).fetchone()[0]
                for t in ("generations", "scores"))
        if not dry_run and n:
            for table in ("generations", "scores"):
                self._db.execute(f"DELETE FROM {table} WHERE created < ?", (cutoff,))
            self._db.execute("VACUUM")
        return n

    def close(self) -> None:
        """Close the connection (a later call reopens it)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class CachedLM(LM):
    """``lm`` with every sample and score read from / written to ``cache`` (a GenerationCache, or a cache root).

    ``backend_calls`` counts samples and scores actually computed by the backend; ``hits`` those read back."""

    def __init__(self, lm: LM, *, cache: GenerationCache | str | Path | None = None) -> None:
        self.lm = lm
        self.cache = cache if isinstance(cache, GenerationCache) else GenerationCache(cache_file(cache))
        self.backend = lm.backend
        self.identity = lm.identity
        self.deterministic = lm.deterministic
        self.backend_calls = 0
        self.hits = 0

    def render(self, request):
        return self.lm.render(request)

    def count_tokens(self, texts):
        return self.lm.count_tokens(texts)

    def sample_keys(self, request: GenerationRequest) -> list[str]:
        """The cache key of each of the request's n samples."""
        prompt = self.lm.render(request)
        kind = "chat" if request.messages is not None else "text"
        if request.greedy:
            return [_key(self.identity, kind, prompt, request.settings())] * request.n
        return [_key(self.identity, kind, prompt, request.settings(), request.seed, i) for i in request.sample_indices]

    def generate(self, requests: Sequence[GenerationRequest]) -> list[list[Generation]]:
        keys = [self.sample_keys(r) for r in requests]
        found = self.cache.get_generations({k for ks in keys for k in ks})
        # the missing samples, as requests for runs of consecutive indices (each sample keeps its own seed)
        todo: list[tuple[GenerationRequest, list[str]]] = []
        scheduled: set[str] = set()  # a prompt repeated within the batch is generated once
        for request, ks in zip(requests, keys):
            positions = [0] if request.greedy else range(request.n)
            missing = [p for p in positions if ks[p] not in found and ks[p] not in scheduled]
            scheduled.update(ks[p] for p in missing)
            for run in _runs(missing):
                sub = dataclasses.replace(request, first_sample=request.first_sample + run[0], n=len(run))
                todo.append((sub, [ks[p] for p in run]))
        if todo:
            fresh = [pair for (_, run_keys), samples in zip(todo, self.lm.generate([r for r, _ in todo]))
                     for pair in zip(run_keys, samples)]
            self.backend_calls += len(fresh)
            self.cache.put_generations(self.identity, fresh)
            found.update(fresh)
        self.hits += sum(len(ks) for ks in keys) - sum(len(k) for _, k in todo)
        return [[found[k] for k in ks] for ks in keys]

    def loglikelihood(self, requests: Sequence[ScoreRequest]) -> list[Score]:
        keys = [_key(self.identity, "score", self.lm.render(r), r.continuation) for r in requests]
        found = self.cache.get_scores(keys)
        first = {k: i for i, k in reversed(list(enumerate(keys)))}  # a repeated pair is scored once
        missing = [i for i, k in enumerate(keys) if k not in found and first[k] == i]
        if missing:
            scores = self.lm.loglikelihood([requests[i] for i in missing])
            fresh = [(keys[i], s) for i, s in zip(missing, scores)]
            self.backend_calls += len(fresh)
            self.cache.put_scores(self.identity, fresh)
            found.update(fresh)
        self.hits += len(keys) - len(missing)
        return [found[k] for k in keys]

    def close(self) -> None:
        self.lm.close()


def _runs(positions: list[int]) -> list[list[int]]:
    """Split sorted positions into runs of consecutive integers: [0, 1, 3] -> [[0, 1], [3]]."""
    runs: list[list[int]] = []
    for p in positions:
        if runs and runs[-1][-1] == p - 1:
            runs[-1].append(p)
        else:
            runs.append([p])
    return runs


def usage(cache: str | Path | None = None) -> dict | None:
    """{"entries", "mb", "newest"} of the generation cache, or None when there is none."""
    path = cache_file(cache)
    if not path.is_file():
        return None
    size = sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    store = GenerationCache(path)
    try:
        entries = sum(store.counts().values())
    finally:
        store.close()
    return {"entries": entries, "mb": round(size / 2**20, 1), "newest": os.path.getmtime(path)}
