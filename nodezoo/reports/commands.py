"""``nodezoo compare``: tables, figures and a W&B report for a set of runs.

``main_compare(argv) -> exit code`` parses its own options (like the zoo verbs), so
``nodezoo.cli`` only maps the verb to it. Unreadable inputs raise ``ReportError`` (a
``NodezooError``), which ``nodezoo.cli.main`` prints as one line with exit code 2.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..files import write_csv_atomic
from .plots import plot_all
from .sources import ReportError, load_records
from .sweeps import memory_sweep, tolerance_sweep
from .table import write_table
from .wandb_report import publish_or_write

__all__ = ["main_compare"]

DEFAULT_TOLERANCES = (1e-1, 1e-2, 1e-3, 1e-4)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nodezoo compare",
        description="Compare runs against baselines: Table 1 (table.md, table.csv), the "
        "paper's Figure 3 plots (PNG) and optionally a W&B report.",
        allow_abbrev=False,
    )
    parser.add_argument(
        "inputs",
        nargs="+",
        help="run directories (with summary.json), Lightning checkpoints (*.ckpt), zoo names or "
        "folders, W&B run directories (wandb/offline-run-*), benchmarks/cnf.py results "
        "(cnf_<tag>.json: a row per flow)",
    )
    parser.add_argument("--out", required=True, type=Path, help="folder for the outputs")
    parser.add_argument(
        "--tolerances",
        nargs="+",
        type=float,
        default=list(DEFAULT_TOLERANCES),
        help="rtol = atol values for the test-time tolerance sweep and the memory sweep",
    )
    parser.add_argument(
        "--no-tolerance-sweep",
        action="store_true",
        help="do not re-evaluate ODE checkpoints/zoo models at each tolerance",
    )
    parser.add_argument(
        "--limit-batches",
        type=_batch_limit,
        default=None,
        help="test batches per tolerance in the tolerance sweep (default 'all': the whole test "
        "set; a number is a quicker, partial look, and the plot and CSV say so)",
    )
    parser.add_argument("--data-dir", help="data folder for re-evaluation (overrides the recipe)")
    parser.add_argument("--batch-size", type=int, help="test batch size for re-evaluation")
    parser.add_argument(
        "--recipe",
        type=Path,
        help="recipe naming the test data, for checkpoints whose run dir has no config.yaml",
    )
    parser.add_argument(
        "--memory-sweep",
        action="store_true",
        help="measure activation memory of one training step: ODE-Net per gradient mode and "
        "tolerance, ResNet/RevNet per depth (small random batch, seconds on a CPU)",
    )
    parser.add_argument(
        "--depths", nargs="+", type=int, default=[1, 2, 4, 8], help="depths for --memory-sweep"
    )
    parser.add_argument("--wandb-report", action="store_true", help="build a W&B report")
    parser.add_argument("--entity", help="W&B entity owning the report")
    parser.add_argument("--project", default="nodezoo", help="W&B project (default nodezoo)")
    parser.add_argument("--title", default="nodezoo: model comparison", help="report title")
    return parser


def _batch_limit(text: str) -> int | None:
    """``--limit-batches``: a positive count, or ``all`` (None: no limit)."""
    if text == "all":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of batches or 'all', got {text!r}"
        ) from None


def _write_csv(rows: Sequence[dict[str, Any]], path: Path) -> Path:
    return write_csv_atomic(path, list(rows[0]), rows)


def _check(args: argparse.Namespace) -> None:
    if args.limit_batches is not None and args.limit_batches < 1:
        raise ReportError(f"--limit-batches must be >= 1, got {args.limit_batches}.")
    if any(t <= 0 for t in args.tolerances):
        raise ReportError(f"--tolerances must be positive, got {args.tolerances}.")
    if any(d < 1 for d in args.depths):
        raise ReportError(f"--depths must be >= 1, got {args.depths}.")


def compare(args: argparse.Namespace, argv: Sequence[str]) -> list[Path]:
    """Everything ``nodezoo compare`` writes; the paths."""
    _check(args)
    records = load_records(args.inputs)
    out: Path = args.out
    written = list(write_table(records, out))
    tolerance_rows: list[dict[str, Any]] = []
    if not args.no_tolerance_sweep:
        tolerance_rows = tolerance_sweep(
            records,
            args.tolerances,
            limit_batches=args.limit_batches,
            data_dir=args.data_dir,
            batch_size=args.batch_size,
            recipe_path=args.recipe,
        )
        if tolerance_rows:
            written.append(_write_csv(tolerance_rows, out / "tolerance_sweep.csv"))
    memory_rows: list[dict[str, Any]] = []
    if args.memory_sweep:
        memory_rows = memory_sweep(args.tolerances, args.depths)
        written.append(_write_csv(memory_rows, out / "memory_sweep.csv"))
    written += plot_all(records, out, tolerance_rows, memory_rows)
    if args.wandb_report:
        message, path = publish_or_write(
            records,
            out,
            entity=args.entity,
            project=args.project,
            title=args.title,
            table_markdown=(out / "table.md").read_text(),
            argv=argv,
        )
        print(message)
        written += [path] if path else []
    return written


def main_compare(argv: Sequence[str]) -> int:
    """``nodezoo compare INPUTS... --out DIR [...]``."""
    args = _parser().parse_args(list(argv))
    written = compare(args, argv)
    print((args.out / "table.md").read_text())
    print("wrote:\n" + "\n".join(f"  {p}" for p in written))
    return 0
