"""What produced a result: package versions and the code version, saved beside every row."""
from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

from .. import __version__

_PACKAGES = ("torch", "transformers", "numpy", "scikit-learn", "scipy", "tokenizers")


@functools.lru_cache(maxsize=1)
def provenance() -> dict[str, str]:
    versions = {"w2slab": __version__, "python": platform.python_version(), "code": _git_commit()}
    for package in _PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "absent"
    return versions


def _git_commit() -> str:
    """The checkout's commit (+dirty) when w2slab runs from a git checkout, else 'release'."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=5).stdout.strip()
        if not commit:
            return "release"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return commit[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "release"
