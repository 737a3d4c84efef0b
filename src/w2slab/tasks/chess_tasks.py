"""Chess: is the candidate move the best move of the position? Positions from Lichess puzzles and BIG-bench
checkmate_in_one; each position gives its solution move (label 1) and one other legal move (label 0), drawn
at random (seeded by the position) among those moved by the same piece type and capturing iff the solution
does, when there are such moves. Moves are written in SAN without the check and
mate marks ('+', '#'), which would reveal a mate-in-one answer (a probe scored 1.000 with them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import DataError
from .base import Item, Row, TaskSpec, stable_seed
from .qa import read_bigbench
from .readers import read_csv, require_keys

TEMPLATE = "Chess position (FEN): {fen}\nSide to move: {side}\nCandidate move: {move}"


def _chess():
    try:
        import chess
    except ImportError:
        raise DataError("chess tasks need python-chess: pip install chess") from None
    return chess


def _items(board, solution, group: str, where: str, *, exclude_mates: bool = False) -> list[Item]:
    chess = _chess()
    legal = [m for m in board.legal_moves if m != solution]
    if solution not in board.legal_moves:
        raise DataError(f"{where}: the solution move is not legal in this position")
    # Prefer a distractor moved by the same piece type, and capturing iff the solution captures, so that
    # surface features (a queen move, an 'x') do not give the answer away; fall back to any legal move.
    piece = board.piece_type_at(solution.from_square)
    captures = board.is_capture(solution)
    rank = [(board.piece_type_at(m.from_square) != piece) + (board.is_capture(m) != captures) for m in legal]
    shuffled = np.random.default_rng(stable_seed(board.fen())).permutation(len(legal))
    order = sorted(shuffled, key=lambda i: rank[i])
    candidates = (legal[i] for i in order if not (exclude_mates and _gives_mate(board, legal[i])))
    distractor = next(candidates, None)
    if distractor is None:
        raise DataError(f"{where}: no legal move other than the solution")
    side = "white" if board.turn == chess.WHITE else "black"
    # SAN without its check (+) and mate (#) marks: those would give the answer away
    return [Item(TEMPLATE.format(fen=board.fen(), side=side, move=board.san(move).rstrip("+#")), label, group)
            for move, label in ((solution, 1), (distractor, 0))]


def _gives_mate(board, move) -> bool:
    board.push(move)
    try:
        return board.is_checkmate()
    finally:
        board.pop()


def _convert_puzzles(rows: list[Row]) -> list[Item]:
    """The puzzle's first move is the opponent's; the position after it asks for the second move."""
    chess = _chess()
    items = []
    for row in rows:
        where = row.get("_src", "row")
        require_keys(row, ("PuzzleId", "FEN", "Moves"), where=where)
        try:
            board = chess.Board(row["FEN"])
            moves = [chess.Move.from_uci(m) for m in row["Moves"].split()]
            board.push(moves[0])
        except (ValueError, IndexError) as err:
            raise DataError(f"{where}: bad FEN or moves ({err})") from None
        items += _items(board, moves[1], f"puzzle-{row['PuzzleId']}", where)
    return items


def _convert_checkmate(rows: list[Row]) -> list[Item]:
    chess = _chess()
    items = []
    for i, row in enumerate(rows):
        where = row.get("_src", "row")
        require_keys(row, ("input", "target"), where=where)
        board = chess.Board()
        try:
            for token in row["input"].split():
                move = token.rsplit(".", 1)[-1]  # "12.Nf3" / "12." / "Nf3" → "Nf3" / "" / "Nf3"
                if move:
                    board.push_san(move)
        except ValueError as err:
            raise DataError(f"{where}: unreadable move list ({err})") from None
        target = row["target"][0] if isinstance(row["target"], list) else row["target"]
        try:
            solution = board.parse_san(target.strip())
        except ValueError:
            raise DataError(f"{where}: target {target!r} is not a legal move") from None
        items += _items(board, solution, f"mate1-{i}", where, exclude_mates=True)  # a second mate is no distractor
    return items


def _read_checkmate(data_dir: Path) -> list[Row]:
    return read_bigbench(data_dir / "bigbench/checkmate_in_one.json")


LICHESS = TaskSpec(
    name="chess_puzzles", description="Lichess puzzles: is the candidate move the puzzle's solution?",
    licence="CC0 (Lichess puzzle database)", hub=("Lichess/chess-puzzles", None, ("train",)),
    local_files=("lichess_puzzles/puzzles.csv",),
    read_local=lambda d: read_csv(d / "lichess_puzzles/puzzles.csv", ("PuzzleId", "FEN", "Moves")),
    convert=_convert_puzzles, template=TEMPLATE,
    conversion="position after the opponent's first move; solution move → 1, one other legal move (seeded; same "
               "piece type and capture status when possible) → 0")

CHECKMATE = TaskSpec(
    name="chess_mate_in_one", frozen_features_learnable=True,
    description="BIG-bench checkmate_in_one: does the candidate move give mate?",
    licence="Apache-2.0 (BIG-bench)", hub=("tasksource/bigbench", "checkmate_in_one", ("train", "validation")),
    local_files=("bigbench/checkmate_in_one.json",), read_local=_read_checkmate, convert=_convert_checkmate,
    hub_rows=lambda rows: [{"input": r["inputs"], "target": r["targets"], "_src": r["_src"]} for r in rows],
    template=TEMPLATE,
    conversion="position after the game's moves; the mating move → 1, one other legal non-mating move (seeded; "
               "same piece type and capture status when possible) → 0")
