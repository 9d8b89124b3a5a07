"""A W&B report comparing the runs, built with ``wandb-workspaces``.

The report holds the comparison table and one panel grid over the compared runs (selected by
display name, grouped by model via the ``run/model`` summary key that ``RunSummary`` writes):
line plots of ``val/acc`` and ``nfe/forward`` by epoch, a bar plot of ``test/acc`` and a run
comparer. Online (a W&B API key and not ``WANDB_MODE=offline``) it is saved to the server;
offline its definition is written to ``wandb_report.json`` for publishing later.
"""

from __future__ import annotations

import json
import netrc
import os
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from ..files import write_atomic
from .sources import ReportError, RunRecord

__all__ = [
    "TESTED_WANDB_WORKSPACES",
    "build_report",
    "has_wandb_credentials",
    "publish_or_write",
    "serialise_report",
]

# The version whose (private) offline serialiser ``serialise_report`` was written against.
TESTED_WANDB_WORKSPACES = "0.4.13"
REPORT_FILE = "wandb_report.json"
WANDB_HOST = "api.wandb.ai"


def _workspaces():
    try:
        import wandb_workspaces.reports.v2 as wr
    except ImportError:
        raise ReportError(
            "--wandb-report needs the wandb-workspaces package: pip install wandb-workspaces"
        ) from None
    return wr


def build_report(
    records: Sequence[RunRecord],
    *,
    entity: str,
    project: str,
    title: str = "nodezoo: model comparison",
    table_markdown: str = "",
):
    """The ``wandb_workspaces`` Report object. Runsets carry no entity/project: they use the
    report's (which is also what lets the definition be serialised offline)."""
    wr = _workspaces()
    names = [r.name for r in records]
    quoted = ", ".join(repr(n) for n in names)
    runset = wr.Runset(
        name="compared runs", filters=f"Name in [{quoted}]", groupby=["summary.run/model"]
    )
    panels = [
        wr.LinePlot(title="Validation accuracy", x="epoch", y=["val/acc"]),
        wr.LinePlot(title="NFE per training batch (forward)", x="epoch", y=["nfe/forward"]),
        wr.BarPlot(title="Test accuracy", metrics=["test/acc"], orientation="v"),
        wr.RunComparer(diff_only="split"),
    ]
    blocks = [
        wr.H1(text="Compared runs"),
        wr.P(text="Runs: " + ", ".join(names) + ". Grouped by model (summary key run/model)."),
    ]
    if table_markdown:
        blocks.append(wr.MarkdownBlock(text=table_markdown))
    blocks.append(wr.PanelGrid(runsets=[runset], panels=panels))
    return wr.Report(entity=entity, project=project, title=title, blocks=blocks)


def serialise_report(report) -> dict[str, Any]:
    """The report's definition as plain JSON, without a server.

    ``wandb_workspaces`` has no public offline export; this uses its private ``_to_model`` (what
    ``Report.save`` sends). Written against version ``TESTED_WANDB_WORKSPACES``; pin it.
    """
    model = report._to_model()
    return json.loads(model.model_dump_json(by_alias=True, exclude_none=True))


def has_wandb_credentials() -> bool:
    """Online only with a key and not ``WANDB_MODE=offline``/``disabled`` (checked without
    contacting the server, so offline never waits on the network)."""
    if os.environ.get("WANDB_MODE", "").lower() in ("offline", "disabled", "dryrun"):
        return False
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators(WANDB_HOST) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _installed_version() -> str | None:
    try:
        return version("wandb-workspaces")
    except PackageNotFoundError:
        return None


def publish_or_write(
    records: Sequence[RunRecord],
    out: Path,
    *,
    entity: str | None,
    project: str,
    title: str = "nodezoo: model comparison",
    table_markdown: str = "",
    argv: Sequence[str] = (),
) -> tuple[str, Path | None]:
    """Save the report online, or write ``out/wandb_report.json`` offline. Returns a message for
    the user and the file written (None when saved online)."""
    online = has_wandb_credentials()
    if online and not entity:
        import wandb

        entity = wandb.Api().default_entity
    report = build_report(
        records,
        entity=entity or "YOUR_ENTITY",  # offline serialisation needs some entity
        project=project,
        title=title,
        table_markdown=table_markdown,
    )
    if online:
        report.save()
        return f"W&B report saved: {report.url}", None
    path = out / REPORT_FILE
    definition = {
        "wandb_workspaces_version": _installed_version(),
        "tested_wandb_workspaces_version": TESTED_WANDB_WORKSPACES,
        "entity": report.entity,
        "project": project,
        "title": title,
        "runs": [r.name for r in records],
        "report": serialise_report(report),
    }
    write_atomic(path, json.dumps(definition, indent=2) + "\n")
    command = " ".join(["nodezoo compare", *argv])
    message = (
        f"W&B is offline: the report definition is in {path}. To publish it, sync the runs "
        "(wandb sync <run dir>/wandb/offline-run-*), then `wandb login` and run\n"
        f"  {command}" + ("" if entity else " --entity <your entity>")
    )
    return message, path
