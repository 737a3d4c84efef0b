"""Report: the results table printed by ``w2slab run`` (figures and HTML come later)."""
from .table import format_table

__all__ = ["format_table"]
