"""The local web page for human judges (see :mod:`.server`), and live models for it (:mod:`.assistant`): an
assistant for sandwiching with people, and debaters a person questions."""
from .assistant import LiveAssistant, LiveDebaters, passages_for
from .server import JudgingApp, JudgingServer, read_items

__all__ = ["JudgingApp", "JudgingServer", "LiveAssistant", "LiveDebaters", "passages_for", "read_items"]
