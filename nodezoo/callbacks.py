"""Callbacks shared by every model: solver cost and resource use, checkpoints, random state.

They are cross-cutting, so they live here as Lightning callbacks instead of inside each model;
every recipe lists the monitors under ``trainer.callbacks``; ``nodezoo fit`` adds the
checkpoints (``LastCheckpoint``) and ``RandomState`` itself.
"""

from __future__ import annotations

import json
import os
import platform
import random
import shlex
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import WandbLogger

from .files import write_atomic
from .nn.regularisation import TERMS as REGULARISERS
from .runs import MODEL_PARAMS, SUMMARY_NAME, TEST_NFE_FORWARD, count_parameters, ode_blocks

__all__ = [
    "SUMMARY_NAME",
    "LastCheckpoint",
    "RandomState",
    "ResourceMonitor",
    "RunSummary",
    "SavedTensorMeter",
    "SolverStatsMonitor",
]


class SolverStatsMonitor(pl.Callback):
    """Logs the mean number of function evaluations (NFE) per batch, summed over ODE blocks.

    Train: ``nfe/forward`` and ``nfe/backward`` (the adjoint/checkpoint solves; 0 for plain
    backprop, whose cost is in the autograd graph). Validation: ``nfe/forward_eval``. The paper's
    Figure 3 quantities: NFE sets the cost of a step and grows as the model trains. Each rank
    logs its own count, averaged across ranks by ``sync_dist`` at epoch end only, so the
    adaptive solver taking different numbers of steps on different ranks never blocks a step.
    Blocks with regularised dynamics add ``reg/kinetic`` and ``reg/jacobian`` (the unweighted
    integrals, batch means, summed over blocks) next to the training NFE. Blocks with
    ``warm_start`` add ``solver/first_step`` and ``solver/first_step_adjoint`` at epoch end: the
    step sizes their next training solves start with (mean over blocks), which shrink when the
    dynamics stiffen. Models without an ``ODEBlock`` log nothing.
    """

    def __init__(self) -> None:
        self._sums: dict[str, float] = {}
        self._counts: dict[str, int] = {}

    def _accumulate(self, key: str, value: int) -> None:
        self._sums[key] = self._sums.get(key, 0.0) + value
        self._counts[key] = self._counts.get(key, 0) + 1

    def _log_means(self, pl_module: pl.LightningModule, keys: tuple[str, ...]) -> None:
        for key in keys:
            if self._counts.get(key):
                mean = self._sums[key] / self._counts[key]
                pl_module.log(key, float(mean), sync_dist=True)
            self._sums.pop(key, None)
            self._counts.pop(key, None)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        blocks = ode_blocks(pl_module)
        if blocks:  # backward has run by now, so the backward counts are in
            self._accumulate("nfe/forward", sum(b.nfe_forward for b in blocks))
            self._accumulate("nfe/backward", sum(b.nfe_backward for b in blocks))
        for name in REGULARISERS:
            values = [
                float(b.regularisers[name].detach()) for b in blocks if name in b.regularisers
            ]
            if values:
                self._accumulate(f"reg/{name}", sum(values))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        keys = ("nfe/forward", "nfe/backward", *(f"reg/{name}" for name in REGULARISERS))
        self._log_means(pl_module, keys)
        memories = [b.first_steps for b in ode_blocks(pl_module) if b.first_steps is not None]
        for key, i in (("solver/first_step", 0), ("solver/first_step_adjoint", 1)):
            values = [m[i].value for m in memories if m[i].value is not None]
            if values:
                pl_module.log(key, sum(values) / len(values), sync_dist=True)

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        blocks = ode_blocks(pl_module)
        if blocks and not trainer.sanity_checking:
            self._accumulate("nfe/forward_eval", sum(b.nfe_forward for b in blocks))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log_means(pl_module, ("nfe/forward_eval",))


class SavedTensorMeter:
    """Counts the bytes autograd holds for backward at the end of a forward pass (each storage
    once, parameters excluded).

    Installed as saved-tensor hooks for one training forward pass; ``bytes`` is measured when
    the meter exits, over the saved tensors still alive then: that is the activation memory the
    paper's O(1) vs O(L) claims are about. A graph dropped during the pass (an adaptive solve's
    rejected attempts under backprop) frees what it saved, and its memory may be reused at the
    same address by tensors saved later: counting storages by address as they were saved
    counted the dropped ones and missed the reused ones. Device-independent and deterministic.
    """

    def __init__(self, exclude: set[int]):
        self.exclude = exclude
        self.bytes = 0
        self._saved: list[weakref.ref] = []
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        # A detached alias, not ``tensor`` itself: returning the tensor kept tensors saved by
        # backprop through the solver alive after their step (RK-Net: +3.7 MB of RSS per step,
        # 13 GB after an epoch). The alias shares the storage and dies with the graph, so a
        # weak reference to it says whether the graph still holds the storage.
        alias = tensor.detach()
        self._saved.append(weakref.ref(alias))
        return alias

    def _live_bytes(self) -> int:
        storages = {}
        for ref in self._saved:
            alias = ref()
            if alias is not None:
                storage = alias.untyped_storage()
                storages.setdefault(storage.data_ptr(), storage.nbytes())
        return sum(n for key, n in storages.items() if key not in self.exclude)

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)
        self.bytes = self._live_bytes()
        self._saved = []


def _process_peak_rss_mb() -> float | None:
    """The process's peak resident set size so far (``getrusage``), in MiB; None if unavailable."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


class ResourceMonitor(pl.Callback):
    """Logs ``model/params`` once, ``time/epoch_s`` and peak memory per training epoch.

    Memory metrics, each named for what it measures:

    - ``memory/saved_for_backward_mb``: the largest number of bytes autograd held for backward
      after one training forward pass in the epoch (see ``SavedTensorMeter``). This is the
      quantity that separates adjoint ODE-Nets (O(1)) from ResNets/RK-Nets (O(L)), it is the same
      on CPU and GPU, and it does not depend on what else the process holds.
    - ``memory/peak_cuda_mb``: on CUDA, ``torch.cuda.max_memory_allocated`` over the epoch (the
      counter is reset each epoch): everything the caching allocator handed out.
    - ``memory/peak_rss_mb``: on CPU, the process's peak resident set size from ``getrusage``.
      PyTorch's CPU allocator keeps no statistics, and the OS high-water mark cannot be reset, so
      this is a whole-process, ever-growing figure (data set, Python, libraries included): useful
      to spot growth, not to compare models. Hence the separate saved-tensor metric.

    ``track_saved_tensors=False`` removes the saved-tensor hooks (they add a little Python work per
    saved tensor).
    """

    def __init__(self, track_saved_tensors: bool = True):
        self.track_saved_tensors = track_saved_tensors
        self._meter: SavedTensorMeter | None = None
        self._peak_saved = 0
        self._epoch_start = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        params = count_parameters(pl_module)
        for logger in trainer.loggers:  # once per run, as a run attribute rather than a curve
            logger.log_hyperparams({MODEL_PARAMS: params})

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._peak_saved = 0
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.track_saved_tensors:
            exclude = {p.untyped_storage().data_ptr() for p in pl_module.parameters()}
            self._meter = SavedTensorMeter(exclude).__enter__()

    def _stop_meter(self) -> None:
        if self._meter is not None:
            self._meter.__exit__(None, None, None)
            self._peak_saved = max(self._peak_saved, self._meter.bytes)
            self._meter = None

    def on_before_backward(self, trainer, pl_module, loss) -> None:
        self._stop_meter()  # backward's own saves (recomputation) are not the forward's graph

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_meter()  # a step that skipped backward

    def on_exception(self, trainer, pl_module, exception) -> None:
        self._stop_meter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = {"time/epoch_s": time.perf_counter() - self._epoch_start}
        if self.track_saved_tensors:
            metrics["memory/saved_for_backward_mb"] = self._peak_saved / 2**20
        if pl_module.device.type == "cuda":
            metrics["memory/peak_cuda_mb"] = (
                torch.cuda.max_memory_allocated(pl_module.device) / 2**20
            )
        else:
            rss = _process_peak_rss_mb()
            if rss is not None:
                metrics["memory/peak_rss_mb"] = rss
        for key, value in metrics.items():
            # per-rank figures; reduce with max across ranks (the largest rank bounds the memory)
            pl_module.log(key, float(value), sync_dist=True, reduce_fx="max")


# Per-epoch columns always recorded (None where an epoch has no value, e.g. no validation ran);
# any other ``val/*`` metric (``val/rmse``) is added when it appears.
HISTORY_KEYS = (
    "train/loss",
    "train/acc",
    "val/acc",
    "val/loss",
    "nfe/forward",
    "nfe/backward",
    "time/epoch_s",
)
# Metric groups copied from ``trainer.callback_metrics`` into the summary's top level.
SUMMARY_PREFIXES = ("val/", "nfe/", "reg/", "memory/", "time/")


def _scalar(value: Any) -> float | int | str | None:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else None
    return value if isinstance(value, (int, float, str)) else None


def _epoch_metric(metrics: dict, key: str) -> float | None:
    """A metric logged per epoch; metrics logged both per step and per epoch carry ``_epoch``."""
    for name in (key, f"{key}_epoch"):
        if name in metrics:
            return _scalar(metrics[name])
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def hardware_description(trainer: pl.Trainer) -> str:
    """``"<devices> x <device name>"``: GPU name on CUDA, CPU model (and core count) on CPU."""
    device = trainer.strategy.root_device
    count = trainer.num_devices * trainer.num_nodes
    if device.type == "cuda":
        return f"{count} x {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        return f"{count} x CPU ({_cpu_model()}, {os.cpu_count()} cores)"
    return f"{count} x {device.type}"


class RunSummary(pl.Callback):
    """Writes ``<run dir>/summary.json``: what a run cost and reached, for ``nodezoo compare``.

    One flat record per run (keys ``group/name`` as logged: ``val/acc``, ``nfe/forward``,
    ``memory/...``, ``time/epoch_s``, ``test/...``, plus ``model/params``, ``time/total_s`` and
    ``run/...`` facts: epochs, max_epochs/steps, global_step, hardware, command, name, model), a
    ``history`` of per-epoch columns for the plots. Written (atomically) after every training
    epoch and after testing; ``nodezoo test`` on the run's checkpoint adds its ``test/*`` to the
    existing file. With a ``WandbLogger`` the same scalars go into the W&B run summary.

    The values are the ones the monitors log, so this callback must run after
    ``SolverStatsMonitor``/``ResourceMonitor``; it moves itself behind them if listed first.
    ``dirpath`` defaults to ``trainer.default_root_dir`` (the CLI's run directory, which holds
    ``checkpoints/``, so a checkpoint finds its summary two folders up). Resuming from a
    checkpoint restores the history up to that checkpoint. Rank zero writes.
    """

    def __init__(self, dirpath: str | None = None):
        self.dirpath = dirpath
        self._rows: list[dict[str, Any]] = []
        self._scalars: dict[str, Any] = {}
        self._fit_seconds = 0.0  # training wall time of earlier sessions (resume)
        self._fit_start: float | None = None
        self._validated = False
        self._test_nfe: list[int] = []

    # ---- where and what
    def path(self, trainer: pl.Trainer) -> Path:
        return Path(self.dirpath or trainer.default_root_dir) / SUMMARY_NAME

    def summary(self) -> dict[str, Any]:
        """The record as written: scalars plus ``history`` columns."""
        keys = ["epoch", *HISTORY_KEYS]
        keys += sorted({k for row in self._rows for k in row if k not in keys})
        history = {k: [row.get(k) for row in self._rows] for k in keys}
        return {**self._scalars, "history": history}

    def _write(self, trainer: pl.Trainer) -> None:
        path = self.path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(self.summary(), indent=2) + "\n")
        self._update_wandb_summary(trainer)

    def _update_wandb_summary(self, trainer: pl.Trainer) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(dict(self._scalars))

    def _run_facts(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        hparams = getattr(pl_module, "hparams", {})
        return {
            MODEL_PARAMS: count_parameters(pl_module),
            "run/model": hparams.get("backbone") or type(pl_module).__name__,
            "run/name": self._run_name(trainer),
            "run/max_epochs": trainer.max_epochs,
            "run/max_steps": trainer.max_steps,  # -1 unless the run is step-limited
            "run/global_step": trainer.global_step,
            "run/hardware": hardware_description(trainer),
            "run/command": shlex.join(sys.argv),
        }

    def _run_name(self, trainer: pl.Trainer) -> str:
        """The W&B run's display name (the key a W&B report filters on), else the run dir's."""
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger.experiment.name:
                return logger.experiment.name
        return Path(self.dirpath or trainer.default_root_dir).resolve().name

    def _load_existing(self, trainer: pl.Trainer) -> None:
        """A later ``test`` in a new process adds to the summary that ``fit`` wrote."""
        path = self.path(trainer)
        if self._scalars or not path.is_file():
            return
        data = json.loads(path.read_text())
        history = data.pop("history", {}) or {}
        epochs = history.get("epoch", [])
        self._rows = [
            {k: col[i] for k, col in history.items() if i < len(col)} for i in range(len(epochs))
        ]
        self._scalars = data

    def _run_after_monitors(self, trainer: pl.Trainer) -> None:
        callbacks = trainer.callbacks
        monitor_types = (SolverStatsMonitor, ResourceMonitor)
        monitors = [i for i, c in enumerate(callbacks) if isinstance(c, monitor_types)]
        if monitors and monitors[-1] > callbacks.index(self):
            callbacks.remove(self)
            callbacks.insert(monitors[-1], self)  # the last monitor moved up by one

    # ---- Lightning hooks
    def setup(self, trainer, pl_module, stage: str) -> None:
        self._run_after_monitors(trainer)
        if stage == "fit":  # a fresh run; a resumed one gets its state back from the checkpoint
            self._rows, self._scalars, self._fit_seconds = [], {}, 0.0
        else:
            self._load_existing(trainer)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self._rows, "scalars": self._scalars, "fit_seconds": self._elapsed()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._rows = list(state_dict.get("rows", []))
        self._scalars = dict(state_dict.get("scalars", {}))
        self._fit_seconds = float(state_dict.get("fit_seconds", 0.0))

    def _elapsed(self) -> float:
        running = 0.0 if self._fit_start is None else time.perf_counter() - self._fit_start
        return self._fit_seconds + running

    def on_train_start(self, trainer, pl_module) -> None:
        # a mid-epoch checkpoint resumes that epoch: forget any row for it
        self._rows = [r for r in self._rows if r["epoch"] < trainer.current_epoch]
        self._fit_start = time.perf_counter()

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validated = True

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        row: dict[str, Any] = {"epoch": trainer.current_epoch}
        for key in HISTORY_KEYS:
            if key.startswith("val/") and not self._validated:
                continue  # last epoch's value, still in callback_metrics
            row[key] = _epoch_metric(metrics, key)
        if self._validated:
            row.update({k: _scalar(v) for k, v in metrics.items() if k.startswith("val/")})
        self._validated = False
        self._rows.append(row)
        self._scalars.update(
            {k: _scalar(v) for k, v in metrics.items() if k.startswith(SUMMARY_PREFIXES)}
        )
        # the trainer's count, not the rows': a run resumed from a checkpoint saved on an
        # epoch's last batch (Lightning's ModelCheckpoint; LastCheckpoint waits for the
        # epoch's end) skips that epoch's end, and its row
        self._scalars["run/epochs"] = trainer.current_epoch + 1
        self._scalars["time/total_s"] = self._elapsed()
        if trainer.is_global_zero:  # other ranks' loggers are stand-ins
            self._scalars.update(self._run_facts(trainer, pl_module))
            self._write(trainer)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._fit_seconds = self._elapsed()
        self._fit_start = None
        self._scalars["time/total_s"] = self._fit_seconds
        if self._rows and trainer.is_global_zero:
            self._write(trainer)

    def on_test_start(self, trainer, pl_module) -> None:
        self._test_nfe = []

    def on_test_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        blocks = ode_blocks(pl_module)
        if blocks:
            self._test_nfe.append(sum(b.nfe_forward for b in blocks))

    def on_test_end(self, trainer, pl_module) -> None:
        metrics = trainer.callback_metrics
        self._scalars.update({k: _scalar(v) for k, v in metrics.items() if k.startswith("test/")})
        if self._test_nfe:  # as nodezoo.zoo.evaluate defines it: mean per batch
            self._scalars[TEST_NFE_FORWARD] = sum(self._test_nfe) / len(self._test_nfe)
        if trainer.is_global_zero:
            facts = self._run_facts(trainer, pl_module)
            for key in ("run/global_step", "run/max_epochs", "run/max_steps"):  # training facts
                facts.pop(key)
            for key, value in facts.items():
                self._scalars.setdefault(key, value)  # the training run's facts win
            self._write(trainer)


def _checkpoint_step(path: Path) -> int | None:
    """The ``global_step`` saved in a checkpoint file; None if there is none or it is unreadable.
    Memory-mapped, so only that entry is read."""
    if not path.is_file():
        return None
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: write a fresh one
        return None
    return checkpoint.get("global_step") if isinstance(checkpoint, dict) else None


class LastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is always the end of training, and whose periodic
    saves resume a run as one that never stopped.

    Lightning writes ``last`` at train end only if no ``last`` was written before; with
    ``every_n_train_steps`` that leaves the final steps out (e.g. step 800 of 860), and
    ``--ckpt_path last`` would then test stale weights. At train end this callback reads the
    step saved in ``last.ckpt`` and, when it is behind, saves again.

    A periodic save that falls on an epoch's last batch waits for the end of that epoch: saved
    at the batch, before the epoch's validation and ``on_train_epoch_end`` hooks, the
    checkpoint resumes past the epoch without running them, so the run's summary, the epoch's
    logged metrics and anything else done at epoch end would miss that epoch for good (a
    ``cnf-two-spirals`` run resumed once counted 249 of its 250 epochs). This happens whenever
    the save interval is a multiple of the epoch's length, as in the density recipes (100 steps,
    epochs of 20). Lightning runs checkpoint callbacks' epoch-end hooks after the others', so
    the deferred save holds everything the epoch did.

    Public API only, but for the interval (``_every_n_train_steps``, set by Lightning from the
    argument): ``trainer.save_checkpoint``, ``format_checkpoint_name``, ``last_model_path``.
    The deferral applies to a last-only checkpoint (``save_top_k=0``); rank zero decides at
    train end and every rank follows, since saving is collective.
    """

    _save_at_epoch_end = False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        every = getattr(self, "_every_n_train_steps", 0)
        self._save_at_epoch_end = (
            self.save_last
            and self.save_top_k == 0
            and every >= 1
            and trainer.global_step % every == 0
            and batch_idx + 1 == trainer.num_training_batches  # inf for iterable data: never
        )
        if not self._save_at_epoch_end:
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._save_at_epoch_end:
            self._save_at_epoch_end = False
            self._save_last(trainer)

    def on_train_end(self, trainer, pl_module) -> None:
        super().on_train_end(trainer, pl_module)
        if not self.save_last:
            return
        path = self._last_path()
        behind = trainer.is_global_zero and _checkpoint_step(path) != trainer.global_step
        if trainer.strategy.broadcast(behind, src=0):
            self._save_last(trainer)

    def _last_path(self) -> Path:
        return Path(
            self.last_model_path or self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)
        )

    def _save_last(self, trainer) -> None:
        path = self._last_path()
        trainer.save_checkpoint(str(path))
        self.last_model_path = str(path)


class RandomState(pl.Callback):
    """Torch's (CPU and CUDA), numpy's and Python's random states in every checkpoint, put back
    when a fit resumes from one, so the model's random draws (STEER's end times, Hutchinson
    probes, latent samples) go on as in a run that never stopped; ``nodezoo.data.resume`` does
    the same for the data. They are put back at the start of training, after the sanity check,
    whose draws the uninterrupted run also made before its first step. Plain tensors, numbers
    and lists only, so checkpoints still load with ``weights_only=True``. Under DDP the saved
    state is rank zero's, put back on every rank (``seed_everything`` gives all ranks one seed).
    """

    def __init__(self):
        self._restore: dict | None = None

    def state_dict(self) -> dict[str, Any]:
        kind, keys, pos, has_gauss, cached = np.random.get_state()
        version, internal, gauss_next = random.getstate()
        cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else []
        return {
            "torch": torch.get_rng_state(),
            "cuda": cuda,
            "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": [version, list(internal), gauss_next],
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore = state_dict

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        state, self._restore = self._restore, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            if len(state["cuda"]) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all(state["cuda"])
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
