"""Pictures of a CNF for cards and runs: the learned density beside the data, samples, and how
base points flow over ``t``; as a function (:func:`plot_cnf`) and as a Lightning callback.

2-D models: four panels (data histogram, ``exp log p`` on a grid, sample histogram, sample
paths) above a row of snapshots of base points at ``t = 0 … T`` coloured by their start angle.
Higher-dimensional models whose ``dim`` is a square (digits: 8x8): data images, sample images,
and a few samples' states at ``t = 0 … T`` as image strips.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytorch_lightning as pl
import torch

from ..files import save_figure
from .cnf import CNF


def _figure_libs():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@torch.no_grad()
def density_grid(model: CNF, lim: float, n: int) -> torch.Tensor:
    """``p(x)`` of a 2-D model on an ``n x n`` grid over ``[-lim, lim]^2`` (rows: y from -lim),
    with the exact trace."""
    axis = torch.linspace(-lim, lim, n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    points = torch.stack([xx.flatten(), yy.flatten()], 1).to(next(model.parameters()))
    logp = torch.cat([model.log_prob(chunk, trace="exact") for chunk in points.split(4096)])
    return logp.exp().view(n, n).cpu()


def _plot_2d(plt, model: CNF, data: torch.Tensor, n_samples: int, grid: int, n_times: int, gen):
    lim = max(4.0, float(data.abs().max()) * 1.05)
    extent = (-lim, lim, -lim, lim)
    bins = torch.linspace(-lim, lim, 101).numpy()
    samples = model.sample(n_samples, generator=gen).cpu()
    z0 = model.base_sample(min(n_samples, 2000), generator=gen)
    times = torch.linspace(0.0, model.hparams.t1, n_times)
    path = model.trajectory(z0, times).cpu()  # (n_times, N, 2)
    colour = torch.atan2(path[0, :, 1], path[0, :, 0]).numpy()

    fig = plt.figure(figsize=(3.0 * max(4, n_times), 6.2))
    top = fig.subfigures(2, 1, height_ratios=[1.1, 1.0])
    axes = top[0].subplots(1, 4)
    axes[0].hist2d(data[:, 0].numpy(), data[:, 1].numpy(), bins=bins, cmap="viridis")
    axes[0].set_title(f"data ({len(data)} test points)")
    axes[1].imshow(density_grid(model, lim, grid).numpy(), origin="lower", extent=extent)
    axes[1].set_title("learned density p(x)")
    axes[2].hist2d(samples[:, 0].numpy(), samples[:, 1].numpy(), bins=bins, cmap="viridis")
    axes[2].set_title(f"{n_samples} samples")
    for k in range(min(60, path.shape[1])):
        axes[3].plot(path[:, k, 0], path[:, k, 1], color="0.5", lw=0.5)
    axes[3].scatter(path[-1, :, 0], path[-1, :, 1], s=1, c=colour, cmap="hsv")
    axes[3].set_title("sample paths from the base")
    flow = top[1].subplots(1, n_times)
    for ax, t, points in zip(flow, times.tolist(), path, strict=True):
        ax.scatter(points[:, 0], points[:, 1], s=1, c=colour, cmap="hsv")
        ax.set_title(f"t = {t:.2f}")
    for ax in [*axes, *flow]:
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def _plot_images(plt, model: CNF, data: torch.Tensor, n_samples: int, n_times: int, gen):
    side = math.isqrt(model.hparams.dim)
    n = min(n_samples, 32, len(data))
    samples = model.sample(n, generator=gen).cpu()
    times = torch.linspace(0.0, model.hparams.t1, n_times)
    strips = model.trajectory(model.base_sample(4, generator=gen), times).cpu()  # (T, 4, D)

    def tile(images: torch.Tensor, cols: int) -> torch.Tensor:
        rows = math.ceil(len(images) / cols)
        canvas = torch.full((rows * (side + 1), cols * (side + 1)), float("nan"))
        for i, image in enumerate(images):
            r, c = divmod(i, cols)
            canvas[
                r * (side + 1) : r * (side + 1) + side, c * (side + 1) : c * (side + 1) + side
            ] = image.view(side, side)
        return canvas

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6), width_ratios=[1, 1, 1.4])
    for ax, images, title in (
        (axes[0], data[:n], "data (dequantised test images)"),
        (axes[1], samples, f"{n} samples"),
    ):
        ax.imshow(tile(images.clamp(0, 1), 8).numpy(), cmap="gray_r", vmin=0, vmax=1)
        ax.set_title(title)
    flow = strips.transpose(0, 1).reshape(-1, model.hparams.dim)  # row per sample, col per t
    axes[2].imshow(tile(flow, n_times).numpy(), cmap="coolwarm")
    axes[2].set_title("4 samples flowing from the base, t = 0 … T")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def plot_cnf(
    model: CNF,
    data: torch.Tensor,
    path: str | Path,
    n_samples: int = 20_000,
    grid: int = 200,
    n_times: int = 6,
    seed: int = 0,
) -> Path:
    """Write the card picture of ``model`` against ``data`` (test points, ``(N, dim)``) to a PNG.
    ``seed`` fixes the base draws, so the picture is reproducible."""
    dim = model.hparams.dim
    if dim != 2 and math.isqrt(dim) ** 2 != dim:
        raise ValueError(f"plot_cnf draws 2-D models or square images; dim={dim} is neither.")
    if data.dim() != 2 or data.shape[1] != dim:
        raise ValueError(f"data must have shape (N, {dim}), got {tuple(data.shape)}.")
    plt = _figure_libs()
    gen = torch.Generator().manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        data = data.detach().cpu().float()
        if dim == 2:
            fig = _plot_2d(plt, model, data, n_samples, grid, n_times, gen)
        else:
            fig = _plot_images(plt, model, data, n_samples, n_times, gen)
    finally:
        model.train(was_training)
    path = save_figure(fig, path, dpi=90)
    plt.close(fig)
    return path


def card_picture(model: CNF, datamodule, path: str | Path) -> Path:
    """The zoo card's picture (``nodezoo publish``): :func:`plot_cnf` against the data module's
    test points, with seed 0."""
    datamodule.setup("test")
    batches = [b[0] if isinstance(b, (list, tuple)) else b for b in datamodule.test_dataloader()]
    return plot_cnf(model, torch.cat(batches), path, seed=0)


class DensityPlotCallback(pl.Callback):
    """After every ``every_n_epochs``-th validation, draws :func:`plot_cnf` against the data
    module's validation points to ``<dirpath or run dir>/plots/density_step<step>.png``; W&B
    loggers get the image."""

    def __init__(
        self,
        every_n_epochs: int = 1,
        n_samples: int = 20_000,
        grid: int = 120,
        seed: int = 0,
        dirpath: str | None = None,
    ):
        if every_n_epochs < 1 or n_samples < 1:
            raise ValueError("every_n_epochs and n_samples must be >= 1.")
        self.every_n_epochs, self.n_samples, self.grid = every_n_epochs, n_samples, grid
        self.seed, self.dirpath = seed, dirpath

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        if (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        batches = [b[0] if isinstance(b, (list, tuple)) else b for b in trainer.val_dataloaders]
        folder = Path(self.dirpath or trainer.default_root_dir) / "plots"
        path = plot_cnf(
            pl_module,
            torch.cat(batches),
            folder / f"density_step{trainer.global_step:06d}.png",
            n_samples=self.n_samples,
            grid=self.grid,
            seed=self.seed,
        )
        logger = trainer.logger
        if logger is not None and hasattr(logger, "log_image"):
            logger.log_image(key="val/density", images=[str(path)], step=trainer.global_step)
