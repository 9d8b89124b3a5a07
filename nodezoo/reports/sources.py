"""Read what a run left behind into one ``RunRecord``, whatever form it takes.

``nodezoo compare`` accepts run directories (``summary.json`` written by
``nodezoo.callbacks.RunSummary``), Lightning checkpoints (the summary of their run directory),
zoo names or folders (``metrics.json``) and offline W&B run directories. W&B's binary ``.wandb``
logs are read back with W&B's own tool, ``wandb leet inspect --json``, never parsed here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..callbacks import SUMMARY_NAME
from ..zoo.errors import ZooError
from ..zoo.pretrained import CONFIG_NAME, METRICS_NAME, read_config, read_metrics

__all__ = [
    "ReportError",
    "RunRecord",
    "load_record",
    "load_records",
    "read_wandb_run",
]

CHECKPOINT_SUFFIX = ".ckpt"
WANDB_LOG_GLOB = "run-*.wandb"
# How far above a checkpoint its run directory may be (<run dir>/checkpoints/x.ckpt is 2).
CHECKPOINT_DEPTH = 3
WANDB_TIMEOUT_S = 120
# W&B history keys that differ from the summary's names (Lightning's per-epoch suffix).
EPOCH_SUFFIX = "_epoch"


class ReportError(ValueError):
    """An input ``nodezoo compare`` cannot read; the message says what to pass instead."""


@dataclass
class RunRecord:
    """One compared run: flat scalars (``test/acc``, ``nfe/forward``, ...) and per-epoch
    ``history`` columns (empty for zoo folders). ``checkpoint``/``zoo_folder`` are set when the
    weights are at hand, so the tolerance sweep can re-evaluate the model."""

    name: str
    source: Path
    kind: str  # "run" | "checkpoint" | "zoo" | "wandb"
    scalars: dict[str, Any]
    history: dict[str, list] = field(default_factory=dict)
    checkpoint: Path | None = None
    zoo_folder: Path | None = None

    @property
    def model(self) -> str:
        return str(self.scalars.get("run/model") or self.name)

    def get(self, key: str) -> Any:
        return self.scalars.get(key)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path} is not a readable JSON file: {err}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} does not hold a JSON object.")
    return data


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested groups (``{"test": {"acc": ...}}``) as the ``group/name`` keys the logs use."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _from_summary(path: Path, kind: str, checkpoint: Path | None = None) -> RunRecord:
    data = _read_json(path)
    history = data.pop("history", None) or {}
    data = _flat(data)
    name = data.get("run/name") or path.parent.name
    return RunRecord(str(name), path.parent, kind, data, history, checkpoint=checkpoint)


def _checkpoint_record(ckpt: Path) -> RunRecord:
    for folder in list(ckpt.parents)[:CHECKPOINT_DEPTH]:
        if (folder / SUMMARY_NAME).is_file():
            return _from_summary(folder / SUMMARY_NAME, "checkpoint", checkpoint=ckpt)
    raise ReportError(
        f"no {SUMMARY_NAME} found in the {CHECKPOINT_DEPTH} folders above {ckpt}; was the run "
        "trained with nodezoo.callbacks.RunSummary in trainer.callbacks?"
    )


def _zoo_record(folder: Path) -> RunRecord:
    try:
        scalars, config = dict(read_metrics(folder)), read_config(folder)
    except ZooError as err:
        raise ReportError(str(err)) from None
    scalars.setdefault("run/model", config.get("backbone") or config.get("architecture"))
    return RunRecord(folder.name, folder, "zoo", scalars, zoo_folder=folder)


def _wandb_log(folder: Path) -> Path | None:
    logs = sorted(folder.glob(WANDB_LOG_GLOB))
    return logs[0] if logs else None


def _leet(args: list[str]) -> str:
    """Run ``wandb leet inspect`` (W&B's reader for its transaction logs); its stdout."""
    exe = shutil.which("wandb")
    command = [exe] if exe else [sys.executable, "-m", "wandb"]
    try:
        done = subprocess.run(
            [*command, "leet", "inspect", *args],
            capture_output=True,
            text=True,
            timeout=WANDB_TIMEOUT_S,
            env={**os.environ, "WANDB_SILENT": "true"},
        )
    except (OSError, subprocess.TimeoutExpired) as err:
        raise ReportError(f"`wandb leet inspect` could not run: {err}") from None
    if done.returncode != 0:
        raise ReportError(
            f"`wandb leet inspect {' '.join(args)}` failed ({done.returncode}): "
            f"{done.stderr.strip()[-500:]}. It needs wandb >= 0.31."
        )
    return done.stdout


def _history_by_epoch(records_text: str) -> dict[str, list]:
    """Per-epoch columns from W&B history rows (Lightning logs ``epoch`` with each row), named
    as in summary.json (``train/loss_epoch`` -> ``train/loss``)."""
    rows: dict[int, dict[str, Any]] = {}
    for line in records_text.splitlines():
        if '"history"' not in line:
            continue
        record = json.loads(line)
        item = (record.get("history") or {}).get("item") or {}
        if record.get("type") != "history" or "epoch" not in item:
            continue
        row = rows.setdefault(int(item["epoch"]), {})
        for key, value in item.items():
            if not key.startswith(("_", "trainer/")) and key != "epoch":
                row[key.removesuffix(EPOCH_SUFFIX)] = value
    # training epochs only: Lightning logs a later test under the next epoch number
    epochs = sorted(e for e, row in rows.items() if any(k.startswith("train/") for k in row))
    keys = sorted({k for e in epochs for k in rows[e]})
    history: dict[str, list] = {"epoch": epochs}
    history.update({k: [rows[e].get(k) for e in epochs] for k in keys})
    return history


def read_wandb_run(folder: str | os.PathLike) -> RunRecord:
    """An offline (or synced) W&B run directory: summary, name and per-epoch history."""
    folder = Path(folder)
    if _wandb_log(folder) is None:
        raise ReportError(f"{folder} holds no {WANDB_LOG_GLOB} log; pass a wandb run directory.")
    state = json.loads(_leet(["--summary", "--json", str(folder)]))
    scalars = {k: v for k, v in (state.get("summary") or {}).items() if not k.startswith("_")}
    history = _history_by_epoch(_leet(["--json", str(folder)]))
    name = state.get("name") or scalars.get("run/name") or folder.name
    scalars.setdefault("run/name", name)
    config = state.get("config") or {}
    # a run without RunSummary still has these as config (ResourceMonitor's hyperparameter)
    for key, config_key in (("model/params", "model/params"), ("run/model", "backbone")):
        if config.get(config_key) is not None:
            scalars.setdefault(key, config[config_key])
    return RunRecord(str(name), folder, "wandb", scalars, history)


def load_record(ref: str | os.PathLike) -> RunRecord:
    """A run directory, checkpoint, zoo folder, W&B run directory or shipped zoo name."""
    path = Path(ref)
    if path.is_file():
        if path.suffix != CHECKPOINT_SUFFIX:
            raise ReportError(f"{path} is a file but not a Lightning checkpoint (*.ckpt).")
        return _checkpoint_record(path)
    if path.is_dir():
        if (path / SUMMARY_NAME).is_file():
            return _from_summary(path / SUMMARY_NAME, "run")
        if (path / METRICS_NAME).is_file() and (path / CONFIG_NAME).is_file():
            return _zoo_record(path)
        if _wandb_log(path) is not None:
            return read_wandb_run(path)
        raise ReportError(
            f"{path} has no {SUMMARY_NAME} (run directory), metrics.json + config.json (zoo "
            f"folder) or {WANDB_LOG_GLOB} (W&B run directory)."
        )
    from ..zoo.registry import zoo_names, zoo_root

    if str(ref) in zoo_names():
        return _zoo_record(zoo_root() / str(ref))
    raise ReportError(
        f"{str(ref)!r} is neither a path nor a shipped zoo name (nodezoo list shows them)."
    )


def load_records(refs: list[str]) -> list[RunRecord]:
    """Each reference's record; repeated names get ``#2``, ``#3`` so rows stay distinct."""
    records = [load_record(ref) for ref in refs]
    seen: dict[str, int] = {}
    for record in records:
        seen[record.name] = seen.get(record.name, 0) + 1
        if seen[record.name] > 1:
            record.name = f"{record.name}#{seen[record.name]}"
    return records
