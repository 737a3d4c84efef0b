"""The results store: one SQLite file (WAL mode) with a row per run and a row per PGR summary.

Rows are keyed by content hashes, so re-running an experiment replaces its rows instead of duplicating
them, and two processes may write at once (WAL + busy timeout).
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from ..errors import ConfigError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_key TEXT PRIMARY KEY, experiment TEXT NOT NULL, created_at TEXT NOT NULL,
    task TEXT NOT NULL, weak TEXT NOT NULL, strong TEXT NOT NULL, loss TEXT, seed INTEGER NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('floor', 'ceiling', 'transfer')),
    accuracy REAL, auc REAL, metrics TEXT NOT NULL, config TEXT NOT NULL, predictions TEXT,
    timings TEXT NOT NULL, provenance TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS summaries (
    summary_key TEXT PRIMARY KEY, experiment TEXT NOT NULL, created_at TEXT NOT NULL,
    task TEXT NOT NULL, weak TEXT NOT NULL, strong TEXT NOT NULL, loss TEXT NOT NULL,
    strong_to_strong INTEGER NOT NULL, floor REAL, transfer REAL, ceiling REAL,
    pgr REAL, pgr_low REAL, pgr_high REAL, defined INTEGER NOT NULL, reason TEXT, result TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment);
CREATE INDEX IF NOT EXISTS summaries_by_experiment ON summaries (experiment);
"""

RUN_COLUMNS = ("run_key", "experiment", "created_at", "task", "weak", "strong", "loss", "seed", "role",
               "accuracy", "auc", "metrics", "config", "predictions", "timings", "provenance")
SUMMARY_COLUMNS = ("summary_key", "experiment", "created_at", "task", "weak", "strong", "loss", "strong_to_strong",
                   "floor", "transfer", "ceiling", "pgr", "pgr_low", "pgr_high", "defined", "reason", "result")
_JSON_FIELDS = {"metrics", "config", "timings", "provenance", "result"}


class ResultsStore:
    """``ResultsStore(path)``; the file and its folder are created on first write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(SCHEMA)
        return conn

    def write(self, runs: list[dict], summaries: list[dict]) -> None:
        """Insert (or replace, by key) runs and summaries in one transaction: all rows land or none."""
        with closing(self._connect()) as conn, conn:
            conn.executemany(_insert("runs", RUN_COLUMNS), [_row(r, RUN_COLUMNS) for r in runs])
            conn.executemany(_insert("summaries", SUMMARY_COLUMNS), [_row(s, SUMMARY_COLUMNS) for s in summaries])

    def query(self, table: str, **where: object) -> list[dict]:
        """Rows of ``table`` ('runs' or 'summaries') matching column = value filters, JSON fields decoded."""
        columns = {"runs": RUN_COLUMNS, "summaries": SUMMARY_COLUMNS}.get(table)
        if columns is None:
            raise ConfigError(f"table must be 'runs' or 'summaries', got {table!r}")
        unknown = set(where) - set(columns)
        if unknown:
            raise ConfigError(f"unknown column(s) {', '.join(sorted(unknown))} for {table}")
        if not self.path.is_file():
            return []
        clause = " AND ".join(f"{k} = ?" for k in where) or "1"
        with closing(self._connect()) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(f"SELECT * FROM {table} WHERE {clause} ORDER BY created_at, rowid",
                                tuple(where.values())).fetchall()
        return [{k: json.loads(r[k]) if k in _JSON_FIELDS and r[k] is not None else r[k] for k in r.keys()}
                for r in rows]


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _row(record: dict, columns: tuple[str, ...]) -> tuple:
    return tuple(json.dumps(record[c], sort_keys=True) if c in _JSON_FIELDS else record.get(c) for c in columns)


def check_writable(folder: str | Path) -> Path:
    """Prove ``folder`` can be created and written without creating anything; ConfigError otherwise."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a directory" if existing.exists() and not existing.is_dir() else "permission denied"
        raise ConfigError(f"results directory {str(folder)!r} is not writable ({why} at {str(existing)!r})")
    return folder
