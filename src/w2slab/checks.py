"""Checks that run before any work: names that become paths, places that will be written, numbers from the
command line, and the reachability of the Hugging Face Hub. Each raises one ConfigError line naming the option."""
from __future__ import annotations

import math
import os
import re
import socket
from pathlib import Path

from .errors import ConfigError, ModelNotInstalledError

SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def check_safe_name(value: object, what: str) -> str:
    """``value`` must be 1–64 of letters, digits, '.', '_' and '-', starting with a letter or digit, since it
    becomes part of a file name (task names, sweep / experiment names, model aliases)."""
    if not isinstance(value, str) or not SAFE_NAME.fullmatch(value) or ".." in value:
        raise ConfigError(f"{what} {value!r} is not a safe name: use 1-64 letters, digits, '.', '_' or '-', "
                          "starting with a letter or digit")
    return value


def freeze_lists(config: object, names: tuple[str, ...]) -> None:
    """Each named field of a frozen dataclass ``config`` must be a non-empty list or tuple and is stored back as a
    tuple; a field named ``seeds`` must hold integers >= 0. ConfigError naming the field otherwise."""
    for name in names:
        value = getattr(config, name)
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)) or not value:
            raise ConfigError(f"{name} must be a non-empty list, got {value!r}")
        object.__setattr__(config, name, tuple(value))
    if "seeds" in names and any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in config.seeds):
        raise ConfigError(f"seeds must be integers >= 0, got {list(config.seeds)}")


def check_int_at_least(value: object, name: str, low: int) -> int:
    """``value`` must be an int (not a bool) >= ``low``; ConfigError naming ``name`` otherwise."""
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_days(value: float | None, what: str = "--older-than") -> None:
    """A finite number of days >= 0 (None passes)."""
    if value is not None and (not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0):
        raise ConfigError(f"{what} must be a finite number of days >= 0, got {value!r}")


def check_writable_dir(path: str | os.PathLike | None, what: str) -> None:
    """``path`` is, or can become, a folder this process may write into (None passes)."""
    if path is None:
        return
    folder = Path(path).expanduser()
    probe = folder
    while not probe.exists():  # the nearest existing ancestor decides
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise ConfigError(f"{what} {str(path)!r} cannot be a folder: {str(probe)!r} is a file")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {str(path)!r}: no permission to write in {str(probe)!r}")


def check_new_file(path: str | os.PathLike | None, what: str, *, overwrite: bool = True,
                   parents: bool = False) -> None:
    """``path`` can be written as a file: not a folder, its folder exists (or, with ``parents``, can be made) and
    is writable; with ``overwrite=False`` it must not exist yet."""
    if path is None:
        return
    target = Path(path).expanduser()
    if target.is_dir():
        raise ConfigError(f"{what} {str(path)!r} is a folder; give a file name")
    if target.exists() and not overwrite:
        raise ConfigError(f"{what} {str(path)!r} exists already; choose a new file or remove it")
    parent = target.parent if str(target.parent) else Path(".")
    if parents and not parent.exists():
        check_writable_dir(parent, what)
        return
    if not parent.is_dir():
        raise ConfigError(f"{what} {str(path)!r}: folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise ConfigError(f"{what} {str(path)!r}: no permission to write there")


_HUB_REACHABLE: bool | None = None


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face Hub can be used: False at once under HF_HUB_OFFLINE=1, else one TCP connection
    to huggingface.co:443 (answer kept for the process)."""
    global _HUB_REACHABLE
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    if _HUB_REACHABLE is None:
        try:
            with socket.create_connection(("huggingface.co", 443), timeout=timeout):
                _HUB_REACHABLE = True
        except OSError:
            _HUB_REACHABLE = False
    return _HUB_REACHABLE


def require_hub(model: str) -> None:
    """ModelNotInstalledError in one line when ``model`` (a Hub id) cannot be fetched: offline or unreachable."""
    if not hub_reachable():
        raise ModelNotInstalledError(
            f"model {model!r} is a Hugging Face Hub id but the Hub is unreachable (offline): use a zoo model "
            "(`w2slab models list`), or download it elsewhere and pass its local folder")
