"""The results store: one SQLite file (WAL mode) with a row per run, a row per PGR summary, a row per
failed sweep run, and a row per judgement (a model's or a person's verdict on one item, e.g. "is this code
buggy?", with or without an AI critique), a row per self-improvement round (one model, task, filter and seed),
and a row per red-teaming attack (one target, method and seed).

Rows are keyed by content hashes, so re-running an experiment replaces its rows instead of duplicating
them, and two processes may write at once (WAL + busy timeout; each write is one transaction).
"""
from __future__ import annotations

import json
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from ..errors import ConfigError
from ..io import open_sqlite

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
CREATE TABLE IF NOT EXISTS failures (
    run_key TEXT PRIMARY KEY, experiment TEXT NOT NULL, created_at TEXT NOT NULL, task TEXT NOT NULL,
    weak TEXT NOT NULL, strong TEXT NOT NULL, loss TEXT NOT NULL, seed INTEGER NOT NULL, stage TEXT NOT NULL,
    error TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS judgements (
    judgement_key TEXT PRIMARY KEY, experiment TEXT NOT NULL, created_at TEXT NOT NULL, item_id TEXT NOT NULL,
    problem_id TEXT NOT NULL, judge TEXT NOT NULL, judge_kind TEXT NOT NULL CHECK (judge_kind IN ('model', 'human')),
    condition TEXT NOT NULL, critic TEXT NOT NULL, seed INTEGER NOT NULL, buggy INTEGER NOT NULL, p_buggy REAL,
    decision INTEGER NOT NULL, seconds REAL, meta TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rounds (
    round_key TEXT PRIMARY KEY, experiment TEXT NOT NULL, created_at TEXT NOT NULL, task TEXT NOT NULL,
    model TEXT NOT NULL, filter TEXT NOT NULL, seed INTEGER NOT NULL, round INTEGER NOT NULL, n_test INTEGER NOT NULL,
    greedy_acc REAL, maj_acc REAL, greedy_unextractable INTEGER, sample_unextractable INTEGER, kept INTEGER,
    kept_wrong_share REAL, metrics TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rounds_by_experiment ON rounds (experiment);
CREATE TABLE IF NOT EXISTS attacks (
    attack_key TEXT PRIMARY KEY, experiment TEXT NOT NULL, created_at TEXT NOT NULL, red_lm TEXT NOT NULL,
    target TEXT NOT NULL, method TEXT NOT NULL, seed INTEGER NOT NULL, n_cases INTEGER NOT NULL,
    flagged INTEGER NOT NULL, raw_rate REAL, corrected_rate REAL, corrected_low REAL, corrected_high REAL,
    metrics TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS judgements_by_experiment ON judgements (experiment);
CREATE INDEX IF NOT EXISTS runs_by_experiment ON runs (experiment);
CREATE INDEX IF NOT EXISTS summaries_by_experiment ON summaries (experiment);
"""

RUN_COLUMNS = ("run_key", "experiment", "created_at", "task", "weak", "strong", "loss", "seed", "role",
               "accuracy", "auc", "metrics", "config", "predictions", "timings", "provenance")
SUMMARY_COLUMNS = ("summary_key", "experiment", "created_at", "task", "weak", "strong", "loss", "strong_to_strong",
                   "floor", "transfer", "ceiling", "pgr", "pgr_low", "pgr_high", "defined", "reason", "result")
FAILURE_COLUMNS = ("run_key", "experiment", "created_at", "task", "weak", "strong", "loss", "seed", "stage", "error")
# critiques: condition 'alone' or 'critique' (critic names the critic), buggy = the truth, decision 1 = judged buggy;
# oversight: condition = the protocol, critic = the expert model, buggy = 1 when answer B is correct, p_buggy = P(B);
# red-team audits (people on the judging page): condition 'audit', item_id = the reply's audit id, buggy = -1 (no
# known truth), decision 1 = judged harmful; seconds: time to judge (people)
JUDGEMENT_COLUMNS = ("judgement_key", "experiment", "created_at", "item_id", "problem_id", "judge", "judge_kind",
                     "condition", "critic", "seed", "buggy", "p_buggy", "decision", "seconds", "meta")
# round 0 is the base model; kept / kept_wrong_share describe the training set the round's outputs selected
# (None for the last round, which only evaluates); metrics: every measurement of selfimprove.round_metrics
ROUND_COLUMNS = ("round_key", "experiment", "created_at", "task", "model", "filter", "seed", "round", "n_test",
                 "greedy_acc", "maj_acc", "greedy_unextractable", "sample_unextractable", "kept", "kept_wrong_share",
                 "metrics")
# red teaming: one row per (target, method, seed); raw_rate = share of replies flagged, corrected_* = the rate
# corrected for the classifier's measured error (None when the classifier is no better than chance)
ATTACK_COLUMNS = ("attack_key", "experiment", "created_at", "red_lm", "target", "method", "seed", "n_cases",
                  "flagged", "raw_rate", "corrected_rate", "corrected_low", "corrected_high", "metrics")
COLUMNS = {"runs": RUN_COLUMNS, "summaries": SUMMARY_COLUMNS, "failures": FAILURE_COLUMNS,
           "judgements": JUDGEMENT_COLUMNS, "rounds": ROUND_COLUMNS, "attacks": ATTACK_COLUMNS}
_JSON_FIELDS = {"metrics", "config", "timings", "provenance", "result", "meta"}


class ResultsStore:
    """``ResultsStore(path)``; the file and its folder are created on first write."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        conn = open_sqlite(self.path, timeout_s=30)
        conn.executescript(SCHEMA)
        return conn

    def write(self, runs: list[dict], summaries: list[dict], *, failures: list[dict] = (),
              resolved: list[str] = (), judgements: list[dict] = (), rounds: list[dict] = (),
              attacks: list[dict] = ()) -> None:
        """Insert (or replace, by key) runs, summaries, failures, judgements, rounds and attacks, and delete the
        failures of ``resolved`` run keys, in one transaction: all of it lands or none."""
        with closing(self._connect()) as conn, conn:
            conn.executemany(_insert("attacks", ATTACK_COLUMNS), [_row(a, ATTACK_COLUMNS) for a in attacks])
            conn.executemany(_insert("rounds", ROUND_COLUMNS), [_row(r, ROUND_COLUMNS) for r in rounds])
            conn.executemany(_insert("judgements", JUDGEMENT_COLUMNS),
                             [_row(j, JUDGEMENT_COLUMNS) for j in judgements])
            conn.executemany(_insert("runs", RUN_COLUMNS), [_row(r, RUN_COLUMNS) for r in runs])
            conn.executemany(_insert("summaries", SUMMARY_COLUMNS), [_row(s, SUMMARY_COLUMNS) for s in summaries])
            conn.executemany(_insert("failures", FAILURE_COLUMNS), [_row(f, FAILURE_COLUMNS) for f in failures])
            conn.executemany("DELETE FROM failures WHERE run_key = ?", [(k,) for k in resolved])

    def query(self, table: str, **where: object) -> list[dict]:
        """Rows of ``table`` ('runs', 'summaries', 'failures', 'judgements', 'rounds' or 'attacks') matching column = value filters (a list or
        tuple value matches any of its items), JSON fields decoded."""
        columns = COLUMNS.get(table)
        if columns is None:
            raise ConfigError(f"table must be one of {', '.join(COLUMNS)}, got {table!r}")
        unknown = set(where) - set(columns)
        if unknown:
            raise ConfigError(f"unknown column(s) {', '.join(sorted(unknown))} for {table} "
                              f"(columns: {', '.join(columns)})")
        if not self.path.is_file():
            return []
        clauses, values = [], []
        for k, v in where.items():
            options = list(v) if isinstance(v, (list, tuple, set)) else [v]
            clauses.append(f"{k} IN ({', '.join('?' * len(options))})")
            values.extend(options)
        with closing(self._connect()) as conn:
            conn.row_factory = sqlite3.Row
            rows = conn.execute(f"SELECT * FROM {table} WHERE {' AND '.join(clauses) or '1'} "
                                "ORDER BY created_at, rowid", values).fetchall()
        return [{k: json.loads(r[k]) if k in _JSON_FIELDS and r[k] is not None else r[k] for k in r.keys()}
                for r in rows]

    def connect(self) -> sqlite3.Connection:
        """A connection to the store's file with every table created (for modules that keep their own tables
        beside the results, e.g. the human-judging page). Close it after use."""
        return self._connect()

    def experiments(self) -> list[str]:
        """Every experiment id or sweep name with stored rows (runs, summaries or failures), sorted."""
        if not self.path.is_file():
            return []
        with closing(self._connect()) as conn:
            rows = conn.execute(" UNION ".join(f"SELECT DISTINCT experiment FROM {t}" for t in COLUMNS)).fetchall()
        return sorted(r[0] for r in rows)

    def dataframe(self, table: str = "summaries", **where: object):
        """``query`` as a pandas DataFrame; JSON fields stay nested (dicts) in their columns."""
        import pandas as pd

        return pd.DataFrame(self.query(table, **where), columns=list(COLUMNS.get(table) or ()))

    def export(self, target: str | Path, table: str = "summaries", **where: object) -> int:
        """Write the matching rows to ``target`` (.csv or .parquet, chosen by suffix; JSON fields as JSON text),
        atomically. Returns the number of rows written."""
        from ..io import atomic_path

        target = Path(target)
        if target.suffix not in (".csv", ".parquet"):
            raise ConfigError(f"export file must end in .csv or .parquet, got {target.name!r}")
        frame = self.dataframe(table, **where)
        for column in _JSON_FIELDS & set(frame.columns):
            frame[column] = [json.dumps(v, sort_keys=True) for v in frame[column]]
        with atomic_path(target, suffix=target.suffix) as tmp:
            if target.suffix == ".csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
        return len(frame)


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _row(record: dict, columns: tuple[str, ...]) -> tuple:
    return tuple(json.dumps(record[c], sort_keys=True) if c in _JSON_FIELDS else record.get(c) for c in columns)


def check_writable(folder: str | Path, *, what: str = "results directory", min_free_mb: float = 0) -> Path:
    """Prove ``folder`` can be created and written (with ``min_free_mb`` free) without creating anything;
    ConfigError otherwise."""
    import shutil

    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        why = "not a directory" if existing.exists() and not existing.is_dir() else "permission denied"
        raise ConfigError(f"{what} {str(folder)!r} is not writable ({why} at {str(existing)!r})")
    free_mb = shutil.disk_usage(existing).free / 2**20
    if free_mb < min_free_mb:
        raise ConfigError(f"{what} {str(folder)!r} is on a full disk ({free_mb:.0f} MB free, need {min_free_mb:.0f})")
    return folder
