"""The paper's comparison figures as PNGs, drawn from run records and sweep rows.

Uses matplotlib's object API (``Figure`` renders through Agg when saved), so no global backend is
switched and nothing needs a display. Each function returns the file it wrote, or None when no
input has the data it plots (a zoo folder has no per-epoch history, a ResNet no NFE).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..files import save_figure
from .sources import RunRecord

__all__ = [
    "plot_accuracy_vs_epoch",
    "plot_all",
    "plot_memory_vs_nfe",
    "plot_nfe_backward_vs_forward",
    "plot_nfe_vs_epoch",
    "plot_tolerance_sweep",
    "tolerance_sweep_figure",
]

DPI = 120
MARKERS = "osD^v<>p*h"  # series that coincide (adjoint and checkpoint memory) stay visible
NUDGE_DECADES = 0.03  # tolerance-sweep series apart on the log axis: about 7% per series
LINESTYLES = ("-", "--", "-.", ":")  # a dashed line over a solid one shows both


def _series(record: RunRecord, key: str) -> tuple[list, list]:
    """(epochs, values) of a history column, epochs without a value left out."""
    epochs = record.history.get("epoch") or []
    values = record.history.get(key) or []
    pairs = [(e, v) for e, v in zip(epochs, values) if v is not None]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    return save_figure(fig, path, dpi=DPI)


def _epoch_plot(
    records: Sequence[RunRecord], keys: dict[str, str], ylabel: str, title: str, path: Path
) -> Path | None:
    """One line per record and key (key -> line style) against the epoch."""
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    drawn = False
    for record in records:
        color = None
        for key, style in keys.items():
            x, y = _series(record, key)
            if not x:
                continue
            (line,) = ax.plot(
                x, y, style, color=color, marker="o", markersize=3, label=f"{record.name} {key}"
            )
            color = line.get_color()  # one colour per run
            drawn = True
    if not drawn:
        return None
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_accuracy_vs_epoch(records: Sequence[RunRecord], out: Path) -> Path | None:
    return _epoch_plot(
        records,
        {"val/acc": "-", "train/acc": ":"},
        "accuracy",
        "Accuracy by epoch",
        out / "accuracy_vs_epoch.png",
    )


def plot_nfe_vs_epoch(records: Sequence[RunRecord], out: Path) -> Path | None:
    """Figure 3d: NFE per training batch grows as the model trains."""
    return _epoch_plot(
        records,
        {"nfe/forward": "-", "nfe/backward": "--"},
        "NFE per batch",
        "NFE during training (Fig. 3d)",
        out / "nfe_vs_epoch.png",
    )


def plot_nfe_backward_vs_forward(records: Sequence[RunRecord], out: Path) -> Path | None:
    """Figure 3c: backward (adjoint) NFE against forward NFE, one point per epoch."""
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    top = 0.0
    for record in records:
        forward, backward = record.history.get("nfe/forward"), record.history.get("nfe/backward")
        points = [(f, b) for f, b in zip(forward or [], backward or []) if None not in (f, b)]
        if points and any(b for _, b in points):
            ax.scatter(*zip(*points), label=record.name)
            top = max(top, *(max(p) for p in points))
    if top == 0:
        return None
    ax.plot([0, top], [0, top], "k:", label="backward = forward")
    ax.plot([0, top], [0, top / 2], "k--", alpha=0.5, label="backward = forward / 2")
    ax.set(xlabel="NFE forward", ylabel="NFE backward", title="Backward vs forward NFE (Fig. 3c)")
    ax.legend(fontsize="small")
    ax.grid(alpha=0.3)
    return _save(fig, out / "nfe_backward_vs_forward.png")


def _test_set_label(rows: Sequence[dict[str, Any]]) -> str:
    """What the sweep was evaluated on: the whole test set, or the first batches of it."""
    limits = {str(r.get("test_batches", "all")) for r in rows}
    if limits == {"all"}:
        return "the whole test set"
    counts = sorted(limits - {"all"})
    batches = "batch" if counts == ["1"] else "batches"
    return f"the first {', '.join(counts)} test {batches} only (--limit-batches)"


def _nudge(index: int, count: int) -> float:
    """A factor that spreads ``count`` series apart on a log axis (a few % each), so lines that
    coincide stay visible; 1 for a single series."""
    return 10 ** (NUDGE_DECADES * (index - (count - 1) / 2)) if count > 1 else 1.0


def plot_tolerance_sweep(rows: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """Figure 3a/b (``tolerance_sweep_figure``) as ``tolerance_sweep.png``."""
    return _save(tolerance_sweep_figure(rows), out / "tolerance_sweep.png") if rows else None


def tolerance_sweep_figure(rows: Sequence[dict[str, Any]]) -> Figure:
    """Figure 3a/b: NFE and test accuracy against the solver tolerance used at test time. The
    title says which test data; each series has its own marker and line style and, with several
    series, a small offset along the tolerance axis (the legend says so), so coinciding lines
    stay apart."""
    fig = Figure(figsize=(10, 4.4))
    ax_nfe, ax_acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    # classifiers: accuracy; density models (CNFs), which have none: test NLL
    classifiers = any(r.get("test/acc") is not None for r in rows)
    quality, quality_label, unit = (
        ("test/acc", "test accuracy", "images")
        if classifiers
        else ("test/nll", "test NLL (nats, lower is better)", "points")
    )
    names = list(dict.fromkeys(r["name"] for r in rows))
    for index, name in enumerate(names):
        mine = sorted((r for r in rows if r["name"] == name), key=lambda r: r["tolerance"])
        tol = [r["tolerance"] * _nudge(index, len(names)) for r in mine]
        samples = mine[0].get("test/samples")
        label = f"{name} ({samples:,} {unit})" if samples else name
        style = {
            "linestyle": LINESTYLES[index % len(LINESTYLES)],
            "marker": MARKERS[index % len(MARKERS)],
            "fillstyle": "none",
            "markersize": 8 - index % 3,
            "label": label,
        }
        ax_nfe.plot(tol, [r["test/nfe_forward"] for r in mine], **style)
        values = [r.get(quality) for r in mine]
        if all(v is not None for v in values):  # a classifier among CNFs has no NLL, ...
            ax_acc.plot(tol, values, **style)
    apart = f"models offset {NUDGE_DECADES:g} decade apart in x, so equal lines stay visible"
    note = apart if len(names) > 1 else None
    for ax, ylabel in ((ax_nfe, "NFE per forward pass"), (ax_acc, quality_label)):
        ax.set_xscale("log")
        ax.invert_xaxis()  # tighter tolerance to the right
        ax.set(xlabel="rtol = atol", ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", title=note, title_fontsize="x-small")
    ax_nfe.set_title("Cost vs tolerance (Fig. 3a)")
    ax_acc.set_title(f"{'Accuracy' if classifiers else 'NLL'} vs tolerance (Fig. 3b)")
    fig.suptitle(f"Test-time tolerance sweep on {_test_set_label(rows)}", fontsize="medium")
    return fig


def plot_memory_vs_nfe(rows: Sequence[dict[str, Any]], out: Path) -> Path | None:
    """Activation memory of one training step: ODE-Net by gradient mode against NFE, next to
    ResNet/RevNet against depth (the paper's O(1) vs O(L) claim)."""
    if not rows:
        return None
    fig = Figure(figsize=(10, 4))
    ax_ode, ax_depth = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    series = dict.fromkeys((r["model"], r["gradient"]) for r in rows)
    for index, (model, gradient) in enumerate(series):
        mine = [r for r in rows if (r["model"], r["gradient"]) == (model, gradient)]
        if mine[0]["nfe_forward"] is not None:
            mine.sort(key=lambda r: r["nfe_forward"])
            x = [r["nfe_forward"] for r in mine]
            ax, label = ax_ode, f"{model} ({gradient})"
        else:
            mine.sort(key=lambda r: r["depth"])
            x = [r["depth"] for r in mine]
            ax, label = ax_depth, model
        marker = MARKERS[index % len(MARKERS)]
        ax.plot(
            x,
            [r["saved_for_backward_mb"] for r in mine],
            marker=marker,
            fillstyle="none",
            markersize=8 - index % 3,
            label=label,
        )
    ax_ode.set(xlabel="NFE per forward pass", title="ODE-Net by gradient mode")
    ax_depth.set(xlabel="blocks L", title="ResNet / RevNet by depth")
    for ax in (ax_ode, ax_depth):
        ax.set(ylabel="saved for backward (MiB)")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    return _save(fig, out / "memory_vs_nfe.png")


def plot_all(
    records: Sequence[RunRecord],
    out: Path,
    tolerance_rows: Sequence[dict[str, Any]] = (),
    memory_rows: Sequence[dict[str, Any]] = (),
) -> list[Path]:
    """Every figure the inputs allow; the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = [
        plot_accuracy_vs_epoch(records, out),
        plot_nfe_vs_epoch(records, out),
        plot_nfe_backward_vs_forward(records, out),
        plot_tolerance_sweep(tolerance_rows, out),
        plot_memory_vs_nfe(memory_rows, out),
    ]
    return [p for p in written if p is not None]
