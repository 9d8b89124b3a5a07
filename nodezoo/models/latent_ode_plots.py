"""Figure-8-style spiral plots: observed points, the model's reconstruction and extrapolation,
and the true trajectory, for a few test spirals; as a function and as a Lightning callback."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch

from ..data.spirals import Spirals, make_spirals
from ..files import save_figure
from .latent_ode import LatentODE


def plot_spirals(model: pl.LightningModule, spirals: Spirals, path: str | Path, n: int = 4) -> Path:
    """Write a PNG with one panel per spiral (the first ``n``). A latent ODE is drawn over the
    whole window and beyond; an extrapolating model (the RNN) only after the window."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(spirals))
    w = spirals.window
    whole = isinstance(model, LatentODE)
    query = spirals.times if whole else spirals.times[w:]
    obs_t = [spirals.times[spirals.obs_index[i]] for i in range(n)]
    obs_x = [spirals.noisy[i, spirals.obs_index[i]] for i in range(n)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        preds = []
        for t, x in zip(obs_t, obs_x, strict=True):  # one at a time: series may differ in length
            mean, _ = model.predict(t, x.unsqueeze(0), query, 0)
            preds.append(mean[0])
    model.train(was_training)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    for i, ax in enumerate(axes[0]):
        truth = spirals.clean[i]
        ax.plot(truth[:, 0], truth[:, 1], color="0.6", lw=1, label="true trajectory")
        ax.scatter(obs_x[i][:, 0], obs_x[i][:, 1], s=6, color="k", label="observed")
        pred = preds[i]
        if whole:
            ax.plot(pred[:w, 0], pred[:w, 1], color="tab:blue", lw=1.5, label="reconstruction")
            pred = pred[w - 1 :]
        ax.plot(pred[:, 0], pred[:, 1], color="tab:red", lw=1.5, label="extrapolation")
        ax.set_title(
            f"{'clockwise' if spirals.clockwise[i] else 'counter-clockwise'}, n={len(obs_t[i])}"
        )
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


class SpiralPlotCallback(pl.Callback):
    """After validation, plots ``n_series`` fixed spirals (seed ``seed``, ``n_obs`` observed
    points) to ``<dirpath or run dir>/plots/spirals_step<step>.png``; W&B loggers get the image."""

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_series: int = 4,
        n_obs: int = 30,
        seed: int = 12345,
        dirpath: str | None = None,
    ):
        if every_n_epochs < 1 or n_series < 1:
            raise ValueError("every_n_epochs and n_series must be >= 1.")
        self.every_n_epochs, self.n_series, self.dirpath = every_n_epochs, n_series, dirpath
        self.spirals = make_spirals(n_series, seed, n_obs=n_obs)

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        folder = Path(self.dirpath or trainer.default_root_dir) / "plots"
        path = plot_spirals(
            pl_module, self.spirals, folder / f"spirals_step{trainer.global_step:06d}.png"
        )
        logger = trainer.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image(key="val/spirals", images=[str(path)], step=trainer.global_step)
