"""Monitoring callbacks shared by every model: solver cost and resource use.

They are cross-cutting, so they live here as Lightning callbacks instead of inside each model;
every recipe lists them under ``trainer.callbacks``.
"""

from __future__ import annotations

import sys
import time

import pytorch_lightning as pl
import torch
from torch import nn

from .nn import ODEBlock

__all__ = ["ResourceMonitor", "SolverStatsMonitor"]


def ode_blocks(module: nn.Module) -> list[ODEBlock]:
    return [m for m in module.modules() if isinstance(m, ODEBlock)]


class SolverStatsMonitor(pl.Callback):
    """Logs the mean number of function evaluations (NFE) per batch, summed over ODE blocks.

    Train: ``nfe/forward`` and ``nfe/backward`` (the adjoint/checkpoint solves; 0 for plain
    backprop, whose cost is in the autograd graph). Validation: ``nfe/forward_eval``. The paper's
    Figure 3 quantities: NFE sets the cost of a step and grows as the model trains. Each rank
    logs its own count, averaged across ranks by ``sync_dist`` at epoch end only, so the
    adaptive solver taking different numbers of steps on different ranks never blocks a step.
    Models without an ``ODEBlock`` log nothing.
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

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._log_means(pl_module, ("nfe/forward", "nfe/backward"))

    def on_validation_batch_end(
        self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0
    ) -> None:
        blocks = ode_blocks(pl_module)
        if blocks and not trainer.sanity_checking:
            self._accumulate("nfe/forward_eval", sum(b.nfe_forward for b in blocks))

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._log_means(pl_module, ("nfe/forward_eval",))


class _SavedTensorMeter:
    """Counts the bytes autograd saves for backward (each storage once, parameters excluded).

    Installed as saved-tensor hooks for one training forward pass; everything saved then is held
    until backward, so the total at the end of the forward pass is the activation memory the
    paper's O(1) vs O(L) claims are about. Device-independent and deterministic.
    """

    def __init__(self, exclude: set[int]):
        self.exclude = exclude
        self.seen: set[int] = set()
        self.bytes = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)

    def _pack(self, tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if key not in self.exclude and key not in self.seen:
            self.seen.add(key)
            self.bytes += storage.nbytes()
        return tensor

    def __enter__(self):
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc):
        self._hooks.__exit__(*exc)


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
      after one training forward pass in the epoch (see ``_SavedTensorMeter``). This is the
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
        self._meter: _SavedTensorMeter | None = None
        self._peak_saved = 0
        self._epoch_start = 0.0

    def on_fit_start(self, trainer, pl_module) -> None:
        params = sum(p.numel() for p in pl_module.parameters())
        for logger in trainer.loggers:  # once per run, as a run attribute rather than a curve
            logger.log_hyperparams({"model/params": params})

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._peak_saved = 0
        if pl_module.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(pl_module.device)
        self._epoch_start = time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self.track_saved_tensors:
            exclude = {p.untyped_storage().data_ptr() for p in pl_module.parameters()}
            self._meter = _SavedTensorMeter(exclude).__enter__()

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
