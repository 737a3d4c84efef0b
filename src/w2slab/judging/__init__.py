"""The local web page for human judges (see :mod:`.server`)."""
from .server import JudgingApp, JudgingServer, read_items

__all__ = ["JudgingApp", "JudgingServer", "read_items"]
