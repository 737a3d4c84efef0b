"""The local web page for human judges (see :mod:`.server`), and a live assistant for sandwiching with people
(:mod:`.assistant`)."""
from .assistant import LiveAssistant, passages_for
from .server import JudgingApp, JudgingServer, read_items

__all__ = ["JudgingApp", "JudgingServer", "LiveAssistant", "passages_for", "read_items"]
