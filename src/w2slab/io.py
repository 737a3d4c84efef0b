"""Small file helpers: content hashing and atomic writes (temp file in the same folder + rename)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np


def stable_hash(obj: Any, *, length: int = 20) -> str:
    """Hex digest of a JSON-normalised object (dict keys sorted); equal configs give equal hashes."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _json_default(value: Any) -> Any:
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot hash object of type {type(value).__name__}")


def file_fingerprint(path: str | os.PathLike, *, length: int = 24) -> str:
    """Identity of a (large) file without reading all of it: sha256 of its size and its first and last MiB.
    Changes whenever the file is replaced by other content of any size; does not depend on the path."""
    path = Path(path)
    size = path.stat().st_size
    digest = hashlib.sha256(f"size:{size}".encode())
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        f.seek(max(0, size - (1 << 20)))
        digest.update(f.read(1 << 20))
    return digest.hexdigest()[:length]


def open_sqlite(path: str | os.PathLike, *, timeout_s: float = 60.0, **connect_options):
    """A connection to SQLite file ``path`` in WAL mode, safe when several processes open a new file at once.

    Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "database is locked" at once
    (without waiting) when another process holds it, so the switch is retried until ``timeout_s``."""
    import sqlite3
    import time

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout_s, **connect_options)
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return conn
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                conn.close()
                raise
            time.sleep(0.05)


def text_digests(texts: list[str]) -> np.ndarray:
    """One 16-byte BLAKE2 digest per text: array of shape (n,), dtype ``S16``."""
    return np.array([hashlib.blake2b(t.encode("utf-8"), digest_size=16).digest() for t in texts], dtype="S16")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike, *, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success rename it onto ``target``, on error delete it.

    Readers never see a half-written file, and a killed writer leaves only a ``.tmp-*`` file behind.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".tmp-{target.name}-", suffix=suffix)
    os.close(fd)
    tmp_path = Path(tmp)
    tmp_path.chmod(0o644)  # mkstemp makes it private; artifacts are meant to be read by others
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(target: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default))


def write_npz(target: str | os.PathLike, **arrays: np.ndarray) -> None:
    """Write named arrays to an uncompressed .npz, atomically."""
    with atomic_path(target, suffix=".npz") as tmp:
        np.savez(tmp, **arrays)


def write_npy(target: str | os.PathLike, array: np.ndarray) -> None:
    """Write one array to .npy (memory-mappable), atomically."""
    with atomic_path(target, suffix=".npy") as tmp:
        np.save(tmp, array)


def config_from_toml(cls, path: str | os.PathLike, **overrides: Any):
    """``cls(**fields)`` from a TOML file of ``cls``'s dataclass fields: unknown keys are refused by name, a missing
    or unreadable file is a ConfigError; ``overrides`` that are not None win over the file."""
    import dataclasses
    import tomllib

    from .errors import ConfigError

    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {str(path)!r} is a directory") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return cls(**{**data, **{k: v for k, v in overrides.items() if v is not None}})


def read_jsonl_objects(path: str | os.PathLike, what: str, *, allow_empty: bool = False) -> list[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a UTF-8 JSONL file; DataError naming the line otherwise,
    and (unless ``allow_empty``) for a file without any object. ``what`` names the file in messages."""
    from .errors import DataError

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} file {str(path)!r} {'is a directory' if path.is_dir() else 'does not exist'}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{what} file {path}, line {line}: not UTF-8 text (byte {err.start})") from None
    out = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict):
            raise DataError(f"{what} file {path}, line {number}: not a JSON object")
        out.append((number, row))
    if not out and not allow_empty:
        raise DataError(f"{what} file {path} holds no {what.rstrip('s')}")
    return out
