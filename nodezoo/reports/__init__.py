"""Compare runs against baselines: summaries in, Table 1, Figure 3 plots and W&B reports out.

``nodezoo compare`` (``nodezoo.reports.commands.main_compare``) reads what
``nodezoo.callbacks.RunSummary`` wrote (or a zoo folder's metrics, or an offline W&B run) into
``RunRecord``s; ``table``, ``plots``, ``sweeps`` and ``wandb_report`` each turn them into one
kind of output.
"""

from __future__ import annotations

from .sources import (
    ReportError,
    RunRecord,
    load_record,
    load_records,
    read_benchmark,
    read_wandb_run,
)
from .table import table_rows, write_table

__all__ = [
    "ReportError",
    "RunRecord",
    "load_record",
    "load_records",
    "read_benchmark",
    "read_wandb_run",
    "table_rows",
    "write_table",
]
