"""The paper's Table 1 for any set of runs: error, parameters, memory, time, NFE.

One list of columns drives both outputs: ``table.csv`` holds the summaries' numbers exactly as
recorded (Python's shortest round-trip float text), ``table.md`` the same numbers rounded for
reading. Missing values are empty in the CSV and ``-`` in Markdown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import write_atomic, write_csv_atomic
from .sources import RunRecord

__all__ = ["COLUMNS", "Column", "table_rows", "write_table"]


@dataclass(frozen=True)
class Column:
    """``csv`` is the CSV header, ``label`` the Markdown one; ``value`` reads a record."""

    csv: str
    label: str
    value: Callable[[RunRecord], Any]
    display: Callable[[Any], str] = str


def _key(name: str) -> Callable[[RunRecord], Any]:
    return lambda record: record.get(name)


def _test_error_pct(record: RunRecord) -> float | None:
    acc = record.get("test/acc")
    return None if acc is None else 100.0 * (1.0 - acc)


def _peak(record: RunRecord) -> tuple[float, str] | None:
    """(MiB, kind) of the best peak-memory figure the record has."""
    for key, kind in (("memory/peak_cuda_mb", "cuda"), ("memory/peak_rss_mb", "rss")):
        if record.get(key) is not None:
            return record.get(key), kind
    step = record.get("memory/peak_step_bytes")
    return None if step is None else (step / 2**20, "step")


def _peak_memory(record: RunRecord) -> float | None:
    peak = _peak(record)
    return None if peak is None else peak[0]


def _peak_kind(record: RunRecord) -> str | None:
    peak = _peak(record)
    return None if peak is None else peak[1]


def _fixed(digits: int) -> Callable[[Any], str]:
    return lambda v: f"{v:.{digits}f}"


def _general(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _params(v: Any) -> str:
    return f"{int(v) / 1e6:.3f}M" if int(v) >= 100_000 else f"{int(v):,}"


COLUMNS: tuple[Column, ...] = (
    Column("name", "Run", lambda r: r.name),
    Column("model", "Model", lambda r: r.model),
    Column("test_error_pct", "Test error (%)", _test_error_pct, _fixed(2)),
    Column("test_acc", "Test acc.", _key("test/acc"), _fixed(4)),
    Column("test_rmse", "Test RMSE", _key("test/rmse"), _general),
    Column("test_nll", "Test NLL (nats)", _key("test/nll"), _fixed(4)),
    Column("test_bits_per_dim", "Bits/dim", _key("test/bits_per_dim"), _fixed(4)),
    Column("params", "Params", _key("model/params"), _params),
    Column(
        "saved_for_backward_mb",
        "Activation memory (MiB)",
        _key("memory/saved_for_backward_mb"),
        _general,
    ),
    Column("peak_memory_mb", "Peak memory (MiB)", _peak_memory, _general),
    Column("peak_memory_kind", "Peak kind", _peak_kind),
    Column("time_per_epoch_s", "Time/epoch (s)", _key("time/epoch_s"), _general),
    Column("nfe_forward", "NFE fwd", _key("nfe/forward"), _general),
    Column("nfe_backward", "NFE bwd", _key("nfe/backward"), _general),
    Column("test_nfe_forward", "NFE fwd (test)", _key("test/nfe_forward"), _general),
    Column("epochs", "Epochs", _key("run/epochs")),
    Column("source", "Source", lambda r: r.kind),
)


def _used_columns(records: Sequence[RunRecord]) -> list[Column]:
    """Leave out columns no record has a value for (a table of classifiers has no RMSE)."""
    return [c for c in COLUMNS if any(c.value(r) is not None for r in records)]


def table_rows(records: Sequence[RunRecord]) -> list[dict[str, Any]]:
    """One dict per record, keyed by the CSV header, with the raw values."""
    columns = _used_columns(records)
    return [{c.csv: c.value(r) for c in columns} for r in records]


def _markdown(records: Sequence[RunRecord], columns: list[Column]) -> str:
    def cell(column: Column, record: RunRecord) -> str:
        value = column.value(record)
        return "-" if value is None else column.display(value).replace("|", "\\|")

    lines = [
        "| " + " | ".join(c.label for c in columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
    ]
    lines += ["| " + " | ".join(cell(c, r) for c in columns) + " |" for r in records]
    notes = (
        "Activation memory: bytes autograd saves for backward in one training step "
        "(`memory/saved_for_backward_mb`). Peak memory: `rss` is the whole process's peak RSS "
        "(CPU), `cuda` the allocator's peak"
        + (
            ", `step` the peak PyTorch allocated during one training step (benchmarks/cnf.py)"
            if any(_peak_kind(r) == "step" for r in records)
            else ""
        )
        + ". NFE: mean per training batch in the last epoch."
    )
    return "\n".join(lines) + "\n\n" + notes + "\n"


def write_table(records: Sequence[RunRecord], out: str | Path) -> tuple[Path, Path]:
    """Write ``table.md`` and ``table.csv`` into ``out``; returns their paths."""
    if not records:
        raise ValueError("no runs to tabulate; pass at least one run, checkpoint or zoo name.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    columns = _used_columns(records)
    md_path, csv_path = out / "table.md", out / "table.csv"
    write_atomic(md_path, _markdown(records, columns))
    write_csv_atomic(csv_path, [c.csv for c in columns], table_rows(records))
    return md_path, csv_path
