"""A user's irregularly sampled time series (CSV or Parquet) in the shared batch format.

The file is long-form: one row per (series, time), with a series-id column, a time column and
one or more value columns. A missing value (empty cell / NaN) is an unobserved value: the mask
is per value, so series may observe different columns at different times. Each series' last
``target_fraction`` of points become its targets (to extrapolate); the rest are observed.
Series are split into train/val by ``seed``. ``collate_series`` pads series of different
lengths into the batch format of :mod:`nodezoo.nn.recurrent` (spirals use it too).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .resume import evaluation_loader, training_loader

SUFFIXES = {".csv": pd.read_csv, ".parquet": pd.read_parquet, ".pq": pd.read_parquet}


def collate_series(items: list[dict]) -> dict:
    """Pad per-series dicts (``obs_t (n,)``, ``obs_x (n, D)``, optional ``obs_mask`` (n,) or
    (n, D), and the same for ``target``) into a batch. Padding is masked, its time is the
    series' last time (finite) and its values are 0. Other keys are stacked when they can be."""
    if not items:
        raise ValueError("collate_series got no items.")
    batch: dict = {}
    for part in ("obs", "target"):
        lengths = [len(item[f"{part}_t"]) for item in items]
        width = max(lengths)
        dim = items[0][f"{part}_x"].shape[-1]
        per_value = any(item.get(f"{part}_mask", torch.ones(1)).dim() == 2 for item in items)
        t = torch.zeros(len(items), width)
        x = torch.zeros(len(items), width, dim)
        mask = torch.zeros((len(items), width, dim) if per_value else (len(items), width))
        for b, (item, n) in enumerate(zip(items, lengths, strict=True)):
            t[b, :n] = item[f"{part}_t"]
            t[b, n:] = item[f"{part}_t"][-1] if n else 0.0
            x[b, :n] = item[f"{part}_x"]
            m = item.get(f"{part}_mask")
            m = torch.ones(n) if m is None else m.float()
            if per_value and m.dim() == 1:
                m = m.unsqueeze(-1).expand(n, dim)
            mask[b, :n] = m
        batch |= {f"{part}_t": t, f"{part}_x": x, f"{part}_mask": mask.bool()}
    for key in items[0].keys() - batch.keys():
        values = [item[key] for item in items]
        try:
            batch[key] = torch.stack([torch.as_tensor(v) for v in values])
        except (RuntimeError, TypeError, ValueError):
            batch[key] = values
    return batch


def read_table(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    reader = SUFFIXES.get(path.suffix.lower())
    if reader is None:
        raise ValueError(f"{path}: unknown file type; use one of {', '.join(SUFFIXES)}.")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file.")
    return reader(path)


def _numeric(frame: pd.DataFrame, column: str, what: str) -> np.ndarray:
    """A column as float64, or a ValueError naming the first offending row."""
    col = frame[column]
    if pd.api.types.is_bool_dtype(col):
        col = col.astype(float)
    elif pd.api.types.is_datetime64_any_dtype(col):
        return (col - pd.Timestamp(0)).dt.total_seconds().to_numpy(np.float64)
    converted = pd.to_numeric(col, errors="coerce")
    bad = converted.isna() & col.notna()
    if bad.any():
        row = bad.to_numpy().nonzero()[0][0]
        raise ValueError(
            f"{what} column {column!r} has a non-numeric value {col.iloc[row]!r} (row {row}); "
            "values must be numbers, with empty cells for missing ones."
        )
    return converted.to_numpy(np.float64)


def series_from_frame(
    frame: pd.DataFrame,
    id_column: str = "series_id",
    time_column: str = "time",
    value_columns: list[str] | None = None,
    target_fraction: float = 0.2,
    relative_time: bool = True,
    time_scale: float = 1.0,
) -> tuple[list[dict], list[str]]:
    """Per-series items for :func:`collate_series` and the value column names."""
    if not 0.0 <= target_fraction < 1.0:
        raise ValueError(f"target_fraction must be in [0, 1), got {target_fraction}.")
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}.")
    if value_columns is None:
        value_columns = [c for c in frame.columns if c not in (id_column, time_column)]
    missing = [c for c in (id_column, time_column, *value_columns) if c not in frame.columns]
    if missing:
        raise ValueError(
            f"Missing column(s) {', '.join(map(repr, missing))}; the file has "
            f"{', '.join(map(repr, frame.columns))}. Set id_column/time_column/value_columns."
        )
    if not value_columns:
        raise ValueError("No value columns: the file has only the id and time columns.")
    if frame.empty:
        raise ValueError("The file has no rows.")
    times = _numeric(frame, time_column, "Time")
    if np.isnan(times).any():
        row = int(np.isnan(times).nonzero()[0][0])
        raise ValueError(
            f"Time column {time_column!r} is empty at row {row}; every row needs a time."
        )
    values = np.stack([_numeric(frame, c, "Value") for c in value_columns], axis=1)
    items = []
    for sid, index in frame.groupby(id_column, sort=True).indices.items():
        order = index[np.argsort(times[index], kind="stable")]
        t, x = times[order], values[order]
        if np.any(np.diff(t) == 0):
            raise ValueError(f"Series {sid!r} has two rows at the same time; merge them first.")
        observed = ~np.isnan(x)
        if not observed.any():
            raise ValueError(f"Series {sid!r} has no observed values; drop it from the file.")
        n_target = math.ceil(target_fraction * len(t)) if target_fraction > 0 else 0
        if n_target and len(t) < 2:
            raise ValueError(
                f"Series {sid!r} has one point; with target_fraction > 0 every series needs "
                "at least two (observations and targets)."
            )
        if relative_time:
            t = t - t[0]
        t = t / time_scale
        split = len(t) - n_target
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32)
        items.append(
            {
                "obs_t": as_tensor(t[:split]),
                "obs_x": as_tensor(np.nan_to_num(x[:split])),
                "obs_mask": torch.as_tensor(observed[:split]),
                "target_t": as_tensor(t[split:]),
                "target_x": as_tensor(np.nan_to_num(x[split:])),
                "target_mask": torch.as_tensor(observed[split:]),
            }
        )
    return items, list(value_columns)


class TimeSeriesDataModule(pl.LightningDataModule):
    """Batches of a user's series from ``path`` (``.csv`` / ``.parquet``); see the module doc.

    ``relative_time`` shifts each series to start at 0 (models integrate from ``t0 = 0``);
    ``time_scale`` divides times (pick it so a series spans a few units). ``obs_dim`` is the
    number of value columns, to give the model the same number.
    """

    def __init__(
        self,
        path: str,
        id_column: str = "series_id",
        time_column: str = "time",
        value_columns: list[str] | None = None,
        target_fraction: float = 0.2,
        val_fraction: float = 0.2,
        relative_time: bool = True,
        time_scale: float = 1.0,
        batch_size: int = 32,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.save_hyperparameters()
        self.train_items: list[dict] | None = None
        self.val_items: list[dict] = []
        self.value_columns: list[str] = []

    @property
    def obs_dim(self) -> int:
        self.setup()
        return len(self.value_columns)

    def setup(self, stage: str | None = None) -> None:
        if self.train_items is not None:
            return
        hp = self.hparams
        items, self.value_columns = series_from_frame(
            read_table(hp.path),
            hp.id_column,
            hp.time_column,
            hp.value_columns,
            hp.target_fraction,
            hp.relative_time,
            hp.time_scale,
        )
        order = np.random.default_rng(hp.seed).permutation(len(items))
        n_val = round(hp.val_fraction * len(items))
        if hp.val_fraction > 0 and len(items) >= 2:
            n_val = min(max(n_val, 1), len(items) - 1)
        self.val_items = [items[i] for i in order[:n_val]]
        self.train_items = [items[i] for i in order[n_val:]]

    def _loader(self, items: list[dict], train: bool) -> DataLoader:
        """Training: resumable order, seeded items (``resume.training_loader``)."""
        hp = self.hparams
        common = dict(batch_size=hp.batch_size, seed=hp.seed, num_workers=hp.num_workers,
                      collate_fn=collate_series)  # fmt: skip
        if train:
            return training_loader(items, self, **common)
        return evaluation_loader(items, **common)

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_items, train=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_items, train=False)
