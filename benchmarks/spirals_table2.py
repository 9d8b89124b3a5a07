"""Reproduce the paper's Table 2: predictive RMSE on spirals, RNN vs Latent ODE.

    python benchmarks/spirals_table2.py --out results.json            # train, then evaluate
    python benchmarks/spirals_table2.py --from-checkpoints runs/spirals_table2 --out r.json

Protocol (Chen et al. 2018 §5.1, our choices where the paper is silent):
* Data: ``nodezoo.data.spirals`` (1000 training spirals, half clockwise, σ = 0.3 noise).
* Rows (``--models``): ``rnn_no_gaps``, a 25-unit GRU that reads the observed values (and
  their mask) only, so it cannot see the irregular gaps between observations (our reading of
  the paper's RNN row), ``rnn``, the same with the time gap to the next point as an input (the
  paper's Δt variant), ``latent_ode`` (the paper's RNN
  recognition network) and ``latent_ode_odernn`` (Rubanova et al.'s ODE-RNN encoder).
* One model per row, trained on series whose number of observed points is drawn per
  series from {30, 50, 100} (``--per-n`` trains one model per n instead). The training loss
  covers the observed points and the 100 (noisy) points after the window, for every row
  (``--reconstruct-only``: the observed points only, so extrapolation is never trained).
* Test: ``--n-test`` fresh spirals from ``--test-seed``; the same spirals for every n, only
  the observed subset changes. RMSE of the predicted mean (Latent ODE: decoded posterior mean;
  RNN: its mean fed back autoregressively) against the *true* trajectory at the 100 points
  after the observation window.
* Solver: dopri5 at rtol 1e-5 / atol 1e-6 with backprop through the solver, not the paper's
  1.5e-8, to keep CPU training tractable (override with ``--rtol``/``--atol``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch

from nodezoo.data.spirals import SpiralsDataModule, make_spirals
from nodezoo.models.latent_ode import LatentODE
from nodezoo.models.rnn_baseline import RNNBaseline
from nodezoo.zoo.evaluation import SPIRALS_N_OBS, forecast_rmse

PAPER = {  # Table 2: predictive RMSE for 30 / 50 / 100 observed points
    "rnn": {30: 0.3937, 50: 0.3202, 100: 0.1813},
    "latent_ode": {30: 0.1642, 50: 0.1502, 100: 0.1346},
}
N_OBS = SPIRALS_N_OBS
LABELS = {
    "rnn": "RNN (Δt)",
    "rnn_no_gaps": "RNN (no Δt)",
    "latent_ode": "Latent ODE",
    "latent_ode_odernn": "Latent ODE (ODE-RNN encoder)",
}
PAPER_LABELS = {"rnn": "RNN", "latent_ode": "Latent ODE"}


def build_model(name: str, args) -> pl.LightningModule:
    common = {"lr": args.lr, "lr_schedule": "cosine"}
    if name.startswith("rnn"):
        return RNNBaseline(obs_dim=2, hidden=25, time_gaps=name == "rnn", **common)
    solver = {"method": "dopri5", "rtol": args.rtol, "atol": args.atol, "gradient": "backprop"}
    encoder = "odernn" if name == "latent_ode_odernn" else "rnn"
    return LatentODE(obs_dim=2, latent_dim=4, encoder=encoder, solver=solver, **common)


class PrintProgress(pl.Callback):
    """A line every ``every`` steps (the log of a background run)."""

    def __init__(self, label: str, every: int):
        self.label, self.every, self.start = label, every, time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % self.every == 0:
            loss = float(outputs["loss"]) if isinstance(outputs, dict) else float(outputs)
            elapsed = time.perf_counter() - self.start
            print(f"[{self.label}] step {step} loss {loss:.2f} {elapsed:.0f}s", flush=True)

    def on_validation_end(self, trainer, pl_module) -> None:  # after the model logged val/rmse
        rmse = trainer.callback_metrics.get("val/rmse")
        if rmse is not None and not trainer.sanity_checking:
            print(
                f"[{self.label}] step {trainer.global_step} val/rmse {float(rmse):.4f}", flush=True
            )


def train(name: str, n_obs, args, ckpt: Path) -> pl.LightningModule:
    pl.seed_everything(args.seed, workers=True)
    model = build_model(name, args)
    data = SpiralsDataModule(
        n_obs=n_obs,
        n_train=args.n_train,
        n_val=100,
        batch_size=args.batch_size,
        seed=args.seed,
        extrapolate_in_training=not args.reconstruct_only,
    )
    trainer = pl.Trainer(
        max_steps=args.steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        check_val_every_n_epoch=max(1, args.steps // 10 // max(1, args.n_train // args.batch_size)),
        num_sanity_val_steps=0,
        callbacks=[PrintProgress(ckpt.stem, max(1, args.steps // 40))],
        accelerator="cpu",
    )
    start = time.perf_counter()
    trainer.fit(model, data)
    seconds = time.perf_counter() - start
    print(f"[{ckpt.stem}] trained in {seconds:.0f}s", flush=True)
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(ckpt, weights_only=False)  # a full Lightning checkpoint
    # The run's facts beside its checkpoint, for the model card (model_cards/build_spirals.sh).
    facts = {"time/total_s": round(seconds, 1), "run/threads": args.threads}
    ckpt.with_suffix(".json").write_text(json.dumps(facts, indent=2))
    return model


def load(name: str, ckpt: Path) -> pl.LightningModule:
    if not ckpt.is_file():
        raise SystemExit(f"{ckpt}: no checkpoint; train first (drop --from-checkpoints).")
    cls = RNNBaseline if name.startswith("rnn") else LatentODE
    return cls.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)


def evaluate(model: pl.LightningModule, n: int, args) -> float:
    """The zoo's definition (``nodezoo evaluate`` gives the same numbers for the same seed)."""
    return forecast_rmse(model, make_spirals(args.n_test, seed=args.test_seed, n_obs=n))


def family(name: str) -> str:
    """The paper's row a model is compared with: ``rnn`` or ``latent_ode``."""
    return "rnn" if name.startswith("rnn") else "latent_ode"


def markdown(results: dict) -> str:
    """Our rows, each family's after the paper's row for it."""
    lines = ["| Model | n = 30 | n = 50 | n = 100 |", "|---|---|---|---|"]
    shown = set()
    for name in results:
        paper = family(name)
        if paper not in shown:
            shown.add(paper)
            cells = " | ".join(f"{PAPER[paper][n]:.4f}" for n in N_OBS)
            lines.append(f"| {PAPER_LABELS[paper]} (paper) | {cells} |")
        cells = " | ".join(f"{results[name][str(n)]:.4f}" for n in N_OBS)
        lines.append(f"| {LABELS[name]} (nodezoo) | {cells} |")
    return "\n".join(lines)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["rnn", "latent_ode"], choices=list(LABELS))
    p.add_argument("--from-checkpoints", metavar="DIR", help="load <DIR>/<model>[_n<n>].ckpt")
    p.add_argument("--ckpt-dir", default="runs/spirals_table2", help="where training saves")
    p.add_argument("--per-n", action="store_true", help="one model per n instead of one for all")
    p.add_argument(
        "--reconstruct-only",
        action="store_true",
        help="train on the observed points only (torchdiffeq's example), not the 100 after them",
    )
    p.add_argument("--steps", type=int, default=4000, help="optimiser steps per model")
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-6)
    p.add_argument("--n-test", type=int, default=1000)
    p.add_argument("--test-seed", type=int, default=12345)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="write the results as JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)

    start = time.perf_counter()
    results: dict[str, dict[str, float]] = {}
    folder = Path(args.from_checkpoints or args.ckpt_dir)
    for name in args.models:
        groups = [(n, [n]) for n in N_OBS] if args.per_n else [(None, list(N_OBS))]
        results[name] = {}
        for n_key, n_obs in groups:
            ckpt = folder / (f"{name}_n{n_key}.ckpt" if n_key else f"{name}.ckpt")
            model = load(name, ckpt) if args.from_checkpoints else train(name, n_obs, args, ckpt)
            for n in n_obs:
                results[name][str(n)] = evaluate(model, n, args)
    table = markdown(results)
    print(table)
    report = {
        "results": results,
        "paper": {k: {str(n): v for n, v in d.items()} for k, d in PAPER.items()},
        "settings": vars(args),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "markdown": table,
    }
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
