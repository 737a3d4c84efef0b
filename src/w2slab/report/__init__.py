"""Report: the results table printed by ``w2slab run`` and the static HTML report with figures."""
from .table import format_table


def write_report(**kwargs):
    """See :func:`w2slab.report.html.write_report` (imported lazily: it loads matplotlib)."""
    from .html import write_report as _write

    return _write(**kwargs)


__all__ = ["format_table", "write_report"]
