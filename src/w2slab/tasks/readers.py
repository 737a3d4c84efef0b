"""Readers for the file formats of the local dataset mirror; each error names the file and the row."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError
from .base import Row


def read_text(path: Path) -> str:
    """The whole file as UTF-8 text; DataError naming the file when it is missing or not UTF-8."""
    if not path.is_file():
        raise DataError(f"dataset file {str(path)!r} is missing")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: not UTF-8 text (byte {err.start}); save the file as UTF-8") from None


def read_jsonl(path: Path) -> list[Row]:
    """One JSON object per line → rows (blank lines skipped)."""
    rows = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}, line {line_no}: invalid JSON ({err.msg})") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}, line {line_no}: expected a JSON object")
        row["_src"] = f"{path}, line {line_no}"
        rows.append(row)
    if not rows:
        raise DataError(f"{path}: file has no rows")
    return rows


def read_json_list(path: Path) -> list[Row]:
    """A JSON list of objects → rows."""
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}, line {err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise DataError(f"{path}: expected a JSON list of objects")
    if not data:
        raise DataError(f"{path}: file has no rows")
    for i, row in enumerate(data):
        row["_src"] = f"{path}, item {i}"
    return data


def read_label_text_lines(path: Path) -> list[Row]:
    """Lines of ``<label> <text>`` (the SST-2 ``stsa.binary.*`` format) → rows {text, label}."""
    rows = []
    for line_no, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        label, _, text = line.partition(" ")
        if label not in ("0", "1") or not text.strip():
            raise DataError(f"{path}, line {line_no}: expected '<0|1> <text>', got {line[:40]!r}")
        rows.append({"text": text.strip(), "label": int(label), "_src": f"{path}, line {line_no}"})
    if not rows:
        raise DataError(f"{path}: file has no rows")
    return rows


def require_keys(row: Row, keys: tuple[str, ...], *, where: str) -> None:
    """DataError naming ``where`` when ``row`` lacks any of ``keys``."""
    missing = [k for k in keys if k not in row]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")


def read_tsv(path: Path, columns: tuple[str, ...]) -> list[Row]:
    """A tab-separated file whose header row includes ``columns``; each row must have the header's width."""
    lines = read_text(path).splitlines()
    if not lines:
        raise DataError(f"{path}: file is empty")
    header = lines[0].split("\t")
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: header lacks column(s) {', '.join(missing)}")
    rows = []
    for line_no, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) != len(header):
            raise DataError(f"{path}, line {line_no}: {len(cells)} fields, header has {len(header)}")
        rows.append({**dict(zip(header, cells)), "_src": f"{path}, line {line_no}"})
    if not rows:
        raise DataError(f"{path}: file has no rows")
    return rows


def read_csv(path: Path, columns: tuple[str, ...] = (), *, header: bool = True,
             fieldnames: tuple[str, ...] | None = None) -> list[Row]:
    """A CSV file → rows. With ``header``, the first row names the fields and must include ``columns``;
    without, ``fieldnames`` names them. Every row must have as many fields as the header (no ragged rows)."""
    import csv
    import io

    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    try:
        names = next(reader) if header else list(fieldnames or ())
    except (StopIteration, csv.Error):
        raise DataError(f"{path}: file is empty") from None
    names = [n.strip() for n in names]
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"{path}: header lacks column(s) {', '.join(missing)} (has {', '.join(names)})")
    rows = []
    try:
        for cells in reader:
            line_no = reader.line_num
            if not cells or all(not c.strip() for c in cells):
                continue
            if len(cells) != len(names):
                raise DataError(f"{path}, line {line_no}: {len(cells)} fields, expected {len(names)}")
            rows.append({**dict(zip(names, cells)), "_src": f"{path}, line {line_no}"})
    except csv.Error as err:
        raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({err})") from None
    if not rows:
        raise DataError(f"{path}: file has no rows")
    return rows
