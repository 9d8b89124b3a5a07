"""The paper's 2-D spirals (Chen et al. 2018 §5.1, Table 2), as data and as a data module.

Curves follow torchdiffeq's ``examples/latent_ode.py``: ``t = linspace(0, 6π, n_total)``;
clockwise ``z = 6π + 1 − t``, ``r = a + b·50/z``, ``(r cos z − 5, r sin z)``; counter-clockwise
``r = a + b·t``, ``(r cos t + 5, r sin t)``; ``a = 0``, ``b = 0.3``. We use ``n_total = 1000``
(what torchdiffeq's ``main`` intends; its generator's default of 500 is never overridden there):
a 200-point sample then covers a fifth of a spiral.

Each sample: exactly half of the spirals clockwise; a window of ``window`` consecutive points
from a uniform start plus the ``horizon`` points after it, with times relative to the window
start (so ``t0 = 0``); Gaussian noise (σ = 0.3) on everything a model sees. Observed: ``n_obs``
of the window's points, drawn without replacement and sorted (a list of choices draws one per
series). Targets: the ``horizon`` points after the window — noisy for training, clean for
validation/test, since the paper's predictive RMSE is against the true trajectory.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset

from .resume import evaluation_loader, training_loader
from .timeseries import collate_series


@dataclass
class Spirals:
    """``times (W+H,)``; ``clean``/``noisy`` ``(n, W+H, 2)``; ``clockwise (n,)``; ``obs_index``:
    per series, the sorted indices of its observed window points."""

    times: torch.Tensor
    clean: torch.Tensor
    noisy: torch.Tensor
    clockwise: torch.Tensor
    obs_index: list[torch.Tensor]
    window: int

    def __len__(self) -> int:
        return self.clean.shape[0]


def spiral_curves(n_total: int = 1000, a: float = 0.0, b: float = 0.3):
    """The two underlying curves on ``t = linspace(0, 6π, n_total)``: ``(t, clockwise (n_total,
    2), counter_clockwise (n_total, 2))``."""
    stop = 6 * math.pi
    t = np.linspace(0.0, stop, n_total)
    z = stop + 1.0 - t
    r_cw = a + b * 50.0 / z
    clockwise = np.stack([r_cw * np.cos(z) - 5.0, r_cw * np.sin(z)], 1)
    r_cc = a + b * t
    counter = np.stack([r_cc * np.cos(t) + 5.0, r_cc * np.sin(t)], 1)
    return t, clockwise, counter


def _check_n_obs(n_obs: int | list[int], window: int) -> list[int]:
    choices = [n_obs] if isinstance(n_obs, int) else list(n_obs)
    if not choices or any(not 1 <= n <= window for n in choices):
        raise ValueError(f"n_obs must be in [1, window={window}] (or a list of such), got {n_obs}.")
    return choices


def make_spirals(
    n: int,
    seed: int,
    n_obs: int | list[int] = 100,
    window: int = 100,
    horizon: int = 100,
    n_total: int = 1000,
    noise_std: float = 0.3,
    a: float = 0.0,
    b: float = 0.3,
) -> Spirals:
    """``n`` noisy spiral samples, fully determined by ``seed`` (see the module docstring)."""
    if n < 1 or window < 1 or horizon < 0 or noise_std < 0:
        raise ValueError(
            f"Need n >= 1, window >= 1, horizon >= 0, noise_std >= 0; got {n}, {window}, "
            f"{horizon}, {noise_std}."
        )
    length = window + horizon
    if length > n_total:
        raise ValueError(f"window + horizon = {length} exceeds n_total = {n_total} points.")
    choices = _check_n_obs(n_obs, window)
    rng = np.random.default_rng(seed)
    t, cw, cc = spiral_curves(n_total, a, b)
    clockwise = rng.permutation(np.arange(n) < n // 2)
    starts = rng.integers(0, n_total - length + 1, size=n)
    offsets = starts[:, None] + np.arange(length)
    clean = np.where(clockwise[:, None, None], cw[offsets], cc[offsets])
    noisy = clean + rng.normal(0.0, noise_std, size=clean.shape)
    counts = rng.choice(choices, size=n)
    obs_index = [torch.as_tensor(np.sort(rng.choice(window, k, replace=False))) for k in counts]
    return Spirals(
        times=torch.as_tensor(t[:length] - t[0], dtype=torch.float32),
        clean=torch.as_tensor(clean, dtype=torch.float32),
        noisy=torch.as_tensor(noisy, dtype=torch.float32),
        clockwise=torch.as_tensor(clockwise),
        obs_index=obs_index,
        window=window,
    )


class SpiralsDataset(Dataset):
    """Items in the shared format. ``clean_targets``: targets are the true trajectory;
    ``targets_in_loss=False`` masks the targets out (the model then only reconstructs)."""

    def __init__(self, spirals: Spirals, clean_targets: bool, targets_in_loss: bool = True):
        self.spirals = spirals
        self.clean_targets = clean_targets
        self.targets_in_loss = targets_in_loss

    def __len__(self) -> int:
        return len(self.spirals)

    def __getitem__(self, i: int) -> dict:
        s, w = self.spirals, self.spirals.window
        idx = s.obs_index[i]
        target = (s.clean if self.clean_targets else s.noisy)[i, w:]
        return {
            "obs_t": s.times[idx],
            "obs_x": s.noisy[i, idx],
            "obs_mask": torch.ones(len(idx), dtype=torch.bool),
            "target_t": s.times[w:],
            "target_x": target,
            "target_mask": torch.full((len(target),), self.targets_in_loss),
            "clockwise": s.clockwise[i],
        }


def spiral_batch(spirals: Spirals, clean_targets: bool = True) -> dict:
    """All of ``spirals`` as one batch (for evaluation and plots)."""
    dataset = SpiralsDataset(spirals, clean_targets)
    return collate_series([dataset[i] for i in range(len(dataset))])


class SpiralsDataModule(pl.LightningDataModule):
    """Train / val / test spirals from seeds ``seed``, ``seed + 1``, ``seed + 2``.

    ``n_obs``: observed points per series, an int or a list to draw from per series (the
    default trains one model for 30, 50 and 100 observations). ``extrapolate_in_training``:
    the training loss also covers the ``horizon`` points after the window (noisy); otherwise
    training only reconstructs the observations, as in torchdiffeq's example.
    """

    obs_dim = 2

    def __init__(
        self,
        n_obs: int | list[int] = [30, 50, 100],  # noqa: B006 (LightningCLI needs plain defaults)
        n_train: int = 1000,
        n_val: int = 100,
        n_test: int = 1000,
        window: int = 100,
        horizon: int = 100,
        n_total: int = 1000,
        noise_std: float = 0.3,
        extrapolate_in_training: bool = True,
        batch_size: int = 50,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        _check_n_obs(n_obs, window)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
        self.save_hyperparameters()
        self.datasets: dict[str, SpiralsDataset] = {}

    def make(self, split: str) -> Spirals:
        hp = self.hparams
        offset, n = {"train": (0, hp.n_train), "val": (1, hp.n_val), "test": (2, hp.n_test)}[split]
        return make_spirals(
            n, hp.seed + offset, hp.n_obs, hp.window, hp.horizon, hp.n_total, hp.noise_std
        )

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        train = self.make("train")
        self.datasets = {
            "train": SpiralsDataset(train, False, self.hparams.extrapolate_in_training),
            "val": SpiralsDataset(self.make("val"), clean_targets=True),
            "test": SpiralsDataset(self.make("test"), clean_targets=True),
        }

    def _loader(self, split: str) -> DataLoader:
        """Training: resumable order, seeded items (``resume.training_loader``)."""
        self.setup()
        hp = self.hparams
        common = dict(num_workers=hp.num_workers, collate_fn=collate_series)
        if split == "train":
            return training_loader(
                self.datasets[split], self, batch_size=hp.batch_size, seed=hp.seed,
                **common,
            )  # fmt: skip
        return evaluation_loader(self.datasets[split], batch_size=500, seed=hp.seed, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train")

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")
