"""Read what a run left behind into one ``RunRecord``, whatever form it takes.

``nodezoo compare`` accepts run directories (``summary.json`` written by
``nodezoo.callbacks.RunSummary``), Lightning checkpoints (the summary of their run directory),
zoo names or folders (``metrics.json``), offline W&B run directories, and the JSON results of
``benchmarks/cnf.py`` (one record per model and data set: the CNF baselines next to the zoo's
CNFs). W&B's binary ``.wandb`` logs are read back with W&B's own tool, ``wandb leet inspect
--json``, never parsed here.
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

from ..errors import NodezooError
from ..runs import (
    CHECKPOINT_SUFFIX,
    MODEL_PARAMS,
    RUN_MODEL,
    RUN_NAME,
    SUMMARY_NAME,
    find_summary,
    read_summary,
)
from ..zoo import registry
from ..zoo.folder import CONFIG_NAME, METRICS_NAME, read_config, read_metrics

__all__ = [
    "ReportError",
    "RunRecord",
    "load_record",
    "load_records",
    "read_benchmark",
    "read_wandb_run",
]

WANDB_LOG_GLOB = "run-*.wandb"
WANDB_TIMEOUT_S = 120
# W&B history keys that differ from the summary's names (Lightning's per-epoch suffix).
EPOCH_SUFFIX = "_epoch"
# benchmarks/cnf.py's row fields -> the scalar names runs and zoo folders use
BENCHMARK_FIELDS = {
    "test_nll": "test/nll",
    "bits_per_dim": "test/bits_per_dim",
    "params": MODEL_PARAMS,
    "epoch_wall_s": "time/epoch_s",
    "nfe_forward": "nfe/forward",
    "nfe_backward": "nfe/backward",
    "peak_memory_bytes": "memory/peak_step_bytes",
}


class ReportError(NodezooError, ValueError):
    """An input ``nodezoo compare`` cannot read; the message says what to pass instead."""


@dataclass
class RunRecord:
    """One compared run: flat scalars (``test/acc``, ``nfe/forward``, ...) and per-epoch
    ``history`` columns (empty for zoo folders). ``checkpoint``/``zoo_folder`` are set when the
    weights are at hand, so the tolerance sweep can re-evaluate the model."""

    name: str
    source: Path
    kind: str  # "run" | "checkpoint" | "zoo" | "wandb" | "benchmark"
    scalars: dict[str, Any]
    history: dict[str, list] = field(default_factory=dict)
    checkpoint: Path | None = None
    zoo_folder: Path | None = None

    @property
    def model(self) -> str:
        return str(self.scalars.get(RUN_MODEL) or self.name)

    def get(self, key: str) -> Any:
        return self.scalars.get(key)


def _from_summary(path: Path, kind: str, checkpoint: Path | None = None) -> RunRecord:
    scalars, history = read_summary(path)
    name = scalars.get(RUN_NAME) or path.parent.name
    return RunRecord(str(name), path.parent, kind, scalars, history, checkpoint=checkpoint)


def _checkpoint_record(ckpt: Path) -> RunRecord:
    summary = find_summary(ckpt)
    if summary is None:
        raise ReportError(
            f"no {SUMMARY_NAME} found in the folders above {ckpt}; was the run trained with "
            "nodezoo.callbacks.RunSummary in trainer.callbacks?"
        )
    return _from_summary(summary, "checkpoint", checkpoint=ckpt)


def _zoo_record(folder: Path) -> RunRecord:
    scalars, config = dict(read_metrics(folder)), read_config(folder)
    scalars.setdefault(RUN_MODEL, config.get("backbone") or config.get("architecture"))
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
    scalars.setdefault(RUN_NAME, name)
    config = state.get("config") or {}
    # a run without RunSummary still has these as config (ResourceMonitor's hyperparameter)
    for key, config_key in ((MODEL_PARAMS, MODEL_PARAMS), (RUN_MODEL, "backbone")):
        if config.get(config_key) is not None:
            scalars.setdefault(key, config[config_key])
    return RunRecord(str(name), folder, "wandb", scalars, history)


def read_benchmark(path: str | os.PathLike) -> list[RunRecord]:
    """The rows of a ``benchmarks/cnf.py`` result (``cnf_<tag>.json``): one record per model
    and data set, named ``<model> [<data set>]`` (``zuko-nsf [digits]``). Its times are those
    of the benchmark's interleaved epochs, its memory the peak allocated during one training
    step (``memory/peak_step_bytes``)."""
    path = Path(path)
    try:
        result = json.loads(path.read_text())
        datasets = result["datasets"]
        steps, per_epoch = result["args"]["steps"], result["args"]["steps_per_epoch"]
        rows = [(d["dataset"], model, row) for d in datasets for model, row in d["rows"].items()]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ReportError(
            f"{path} is not a benchmarks/cnf.py result (cnf_<tag>.json with 'args' and "
            f"'datasets'): {type(err).__name__}: {err}."
        ) from None
    epochs = steps // per_epoch if steps % per_epoch == 0 else steps / per_epoch
    records = []
    for dataset, model, row in rows:
        scalars = {key: row[field] for field, key in BENCHMARK_FIELDS.items() if field in row}
        scalars.update({RUN_MODEL: model, "run/epochs": epochs})
        records.append(RunRecord(f"{model} [{dataset}]", path, "benchmark", scalars))
    return records


def _is_benchmark(path: Path) -> bool:
    return path.suffix == ".json" and path.is_file()


def load_record(ref: str | os.PathLike) -> RunRecord:
    """A run directory, checkpoint, zoo folder, W&B run directory or shipped zoo name."""
    path = Path(ref)
    if path.is_file():
        if _is_benchmark(path):
            raise ReportError(
                f"{path} is a benchmark result with a row per model: read it with "
                "read_benchmark (nodezoo compare takes it as it is)."
            )
        if path.suffix != CHECKPOINT_SUFFIX:
            raise ReportError(
                f"{path} is a file but not a Lightning checkpoint (*.ckpt) or a "
                "benchmarks/cnf.py result (*.json)."
            )
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
    if str(ref) in registry.zoo_names():
        return _zoo_record(registry.zoo_root() / str(ref))
    raise ReportError(
        f"{str(ref)!r} is neither a path nor a shipped zoo name (nodezoo list shows them)."
    )


def load_records(refs: list[str]) -> list[RunRecord]:
    """Each reference's record (a benchmark result's, one per row); repeated names get
    ``#2``, ``#3`` so rows stay distinct."""
    records = []
    for ref in refs:
        records += read_benchmark(ref) if _is_benchmark(Path(ref)) else [load_record(ref)]
    seen: dict[str, int] = {}
    for record in records:
        seen[record.name] = seen.get(record.name, 0) + 1
        if seen[record.name] > 1:
            record.name = f"{record.name}#{seen[record.name]}"
    return records
