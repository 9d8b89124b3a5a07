"""Regularised dynamics on the paper-sized Fashion-MNIST ODE-Net: does RNODE (kinetic energy +
Jacobian Frobenius norm, Finlay et al. 2020) or STEER (Ghosh et al. 2020) cut the solver's work
without costing accuracy?

Every setting trains the model of ``recipes/fashion_mnist/odenet.yaml`` with that recipe's
model and data settings (AdamW, one-cycle schedule, batch 32, flips, dopri5 1e-3 adjoint),
from the same initial weights and the same seed, for the same number of steps, one setting
after the other in this process; only the ``regularisation`` init arg differs. Then it tests
the last weights (no checkpoint selection) and prints one table: NFE forward/backward per
training step (mean over the run and over its last quarter: NFE grows as a model trains),
seconds per epoch (wall and this process's CPU time, which load from other processes inflates
less), test accuracy and test-time NFE, and each against the unregularised run.

The issue's goal: >= 2x fewer NFE per training step and >= 1.6x faster epochs at a test
accuracy within 0.3 points of the unregularised run.

    # smoke run (minutes): 300 steps per setting, 2000 test images
    nice python benchmarks/regularisation.py --epochs 1 --train-size 9600 --test-size 2000
    # the full measurement (hours): the zoo's 4 epochs over all 55,000 training images, each
    # setting in its own resumable folder (rerun the same command after a stop)
    nice python benchmarks/regularisation.py --epochs 4 \\
        --runs $HOME/nodezoo-build/regularisation_4ep

A short run says so in its header: its accuracies are far from converged and its NFE are those
of an early model, so read it as a smoke test of the mechanism, not as the measurement.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml
from _measure import machine_description, markdown_table
from pytorch_lightning.callbacks import ModelCheckpoint
from torch.utils.data import Subset

from nodezoo.callbacks import RandomState
from nodezoo.data import FashionMNISTDataModule
from nodezoo.files import write_atomic
from nodezoo.models.classifier import ImageClassifier
from nodezoo.nn import ODEBlock

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "fashion_mnist" / "odenet.yaml"


# Solver changes a setting makes to the recipe's (none: the recipe's solver).
WARM_START = {"warm_start": True}


def settings(
    weights: list[float], kinetic: list[float], steer: list[float], warm_start: bool = False
) -> dict[str, tuple[dict | None, dict | None]]:
    """Name -> (``regularisation`` init arg, changes to the recipe's solver); ``none`` first
    (the reference row). ``warm_start`` adds ``warm start`` (no regularisation, the solver's
    ``warm_start``: each training solve starts with the step size the previous one settled on)
    and ``<setting> + warm start`` for each regularised setting."""
    out: dict[str, tuple[dict | None, dict | None]] = {"none": (None, None)}
    for w in weights:
        out[f"rnode {w:g}"] = ({"kinetic": w, "jacobian": w}, None)
    for w in kinetic:
        out[f"kinetic {w:g}"] = ({"kinetic": w}, None)
    for b in steer:
        out[f"steer b={b:g}"] = ({"steer": b}, None)
    if warm_start:
        regularised = [(name, reg) for name, (reg, _) in out.items() if reg is not None]
        out["warm start"] = (None, WARM_START)
        for name, reg in regularised:
            out[f"{name} + warm start"] = (reg, WARM_START)
    return out


class StepRecorder(pl.Callback):
    """NFE of every training step, and wall/CPU seconds of training (each step timed from the
    end of the one before, or from the start of the epoch: data loading included).

    Its records are part of the checkpoint (``state_dict``), so a run resumed from last.ckpt
    reports every step, not only those after the restart; the steps lost since the last
    checkpoint are run again and counted once."""

    def __init__(self) -> None:
        self.nfe_forward: list[int] = []
        self.nfe_backward: list[int] = []
        self.wall_s = self.cpu_s = 0.0
        self.test_nfe: list[int] = []
        self.regularisers: dict[str, list[float]] = {}
        self._mark: tuple[float, float] | None = None

    @staticmethod
    def _blocks(module) -> list[ODEBlock]:
        return [m for m in module.modules() if isinstance(m, ODEBlock)]

    @staticmethod
    def _now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def on_train_start(self, trainer, pl_module) -> None:
        self._mark = self._now()  # a resumed run may continue an epoch without starting one

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._mark = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = self._now()
        self.wall_s += now[0] - self._mark[0]
        self.cpu_s += now[1] - self._mark[1]
        self._mark = now
        blocks = self._blocks(pl_module)
        self.nfe_forward.append(sum(b.nfe_forward for b in blocks))
        self.nfe_backward.append(sum(b.nfe_backward for b in blocks))
        for b in blocks:
            for name, value in b.regularisers.items():
                self.regularisers.setdefault(name, []).append(float(value.detach()))

    _STATE = ("nfe_forward", "nfe_backward", "wall_s", "cpu_s", "regularisers")

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in self._STATE}

    def load_state_dict(self, state_dict: dict) -> None:
        for name in self._STATE:
            setattr(self, name, state_dict[name])

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dl_idx=0) -> None:
        self.test_nfe.append(sum(b.nfe_forward for b in self._blocks(pl_module)))


def mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def setting_folder(runs: Path, name: str) -> Path:
    """``rnode 1e-05`` -> ``runs/rnode_1e-05``."""
    return runs / name.replace(" ", "_").replace("=", "_")


def run_fingerprint(args) -> dict:
    """What a setting's numbers depend on besides its regularisation: a run folder made with
    other values cannot be resumed or reused."""
    keys = (
        "epochs",
        "max_steps",
        "train_size",
        "test_size",
        "val_size",
        "seed",
        "threads",
        "width",
    )
    recipe = hashlib.sha256(RECIPE.read_bytes()).hexdigest()[:12]
    return {**{k: getattr(args, k) for k in keys}, "recipe": recipe}


def run_or_resume(
    name: str, regularisation: dict | None, solver: dict | None, recipe: dict, args
) -> dict:
    """``run_setting`` in its own folder under ``--runs``: a finished setting's row is read
    back from ``row.json``; a stopped one resumes from its last.ckpt."""
    folder = setting_folder(args.runs, name)
    folder.mkdir(parents=True, exist_ok=True)
    fingerprint = {"setting": name, "regularisation": regularisation, **run_fingerprint(args)}
    if solver:  # only then: the folders of settings made before this key still match
        fingerprint["solver"] = solver
    marker = folder / "run.json"
    if marker.exists():
        found = json.loads(marker.read_text())
        if found != fingerprint:
            raise SystemExit(
                f"{folder} holds a run of other settings ({found}, now {fingerprint}): pass "
                "another --runs folder, or delete that one to start the setting afresh."
            )
    else:
        write_atomic(marker, json.dumps(fingerprint, indent=2))
    row_path = folder / "row.json"
    if row_path.exists():
        print(f"# {name}: done earlier, read from {row_path}", file=sys.stderr, flush=True)
        return json.loads(row_path.read_text())
    row = run_setting(name, regularisation, solver, recipe, args, folder)
    write_atomic(row_path, json.dumps(row, indent=2))
    return row


def run_setting(
    name: str,
    regularisation: dict | None,
    solver: dict | None,
    recipe: dict,
    args,
    folder: Path | None = None,
) -> dict:
    """Train one setting and test its last weights. With ``folder``, last.ckpt is written there
    every ``--checkpoint-every`` steps and training resumes from it if it exists."""
    model_args = dict(recipe["model"]["init_args"])
    if args.width:
        model_args["width"] = args.width
    if solver:
        model_args["solver"] = {**model_args["solver"], **solver}
    data_args = dict(recipe["data"]["init_args"])
    data_args.update(data_dir=args.data_dir, num_workers=args.num_workers)
    if args.val_size is not None:
        data_args["val_size"] = args.val_size
    pl.seed_everything(args.seed, verbose=False)
    model = ImageClassifier(**model_args, regularisation=regularisation)
    data = FashionMNISTDataModule(**data_args)
    data.setup("fit")
    data.setup("test")
    if args.train_size:
        data.train_set = Subset(data.train_set, range(min(args.train_size, len(data.train_set))))
    if args.test_size:
        data.test_set = Subset(data.test_set, range(min(args.test_size, len(data.test_set))))
    recorder = StepRecorder()
    callbacks: list[pl.Callback] = [recorder, RandomState()]
    resume = None
    if folder is not None:
        checkpoints = folder / "checkpoints"
        callbacks.append(
            ModelCheckpoint(
                dirpath=checkpoints, save_last=True, save_top_k=0,
                every_n_train_steps=args.checkpoint_every,
            )
        )  # fmt: skip
        if (checkpoints / "last.ckpt").exists():
            resume = str(checkpoints / "last.ckpt")
            print(f"# {name}: resuming from {resume}", file=sys.stderr, flush=True)
    trainer = pl.Trainer(
        max_epochs=args.epochs,
        max_steps=args.max_steps or -1,
        limit_val_batches=0,  # the last weights are tested; no selection, no validation cost
        accelerator="cpu",
        devices=1,
        logger=False,
        callbacks=callbacks,
        enable_checkpointing=folder is not None,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    # the data module itself (not its loader), so a resumed run picks up where it stopped
    trainer.fit(model, datamodule=data, ckpt_path=resume)
    test_loader = torch.utils.data.DataLoader(
        data.test_set, batch_size=args.test_batch, num_workers=args.num_workers
    )
    (test,) = trainer.test(model, dataloaders=test_loader, verbose=False)
    steps = len(recorder.nfe_forward)
    tail = slice(steps - max(1, steps // 4), steps)
    row = {
        "setting": name,
        "regularisation": regularisation,
        **({"solver": solver} if solver else {}),
        "steps": steps,
        "epochs": trainer.current_epoch,  # completed ones (fit ends with it incremented)
        "nfe_forward": mean(recorder.nfe_forward),
        "nfe_backward": mean(recorder.nfe_backward),
        "nfe_forward_last_quarter": mean(recorder.nfe_forward[tail]),
        "nfe_backward_last_quarter": mean(recorder.nfe_backward[tail]),
        "s_per_step_wall": recorder.wall_s / steps,
        "s_per_step_cpu": recorder.cpu_s / steps,
        "test_acc": float(test["test/acc"]),
        "test_nfe": mean(recorder.test_nfe),
        **{f"{k}_first": v[0] for k, v in recorder.regularisers.items()},
        **{f"{k}_last_quarter": mean(v[tail]) for k, v in recorder.regularisers.items()},
    }
    print(f"# {name}: {json.dumps(row)}", file=sys.stderr, flush=True)
    return row


def table(rows: list[dict], steps_per_epoch: int) -> str:
    """One row per setting; ratio columns against the ``none`` row when there is one."""
    ref = next((r for r in rows if r["setting"] == "none"), None)
    headers = [
        "setting", "NFE fwd/step", "NFE bwd/step", "NFE fwd+bwd, last 1/4", "s/epoch wall",
        "s/epoch CPU", "test acc %", "test NFE", "kinetic / jacobian (first -> last 1/4)",
        "NFE ratio", "epoch ratio (CPU)", "acc diff (points)",
    ]  # fmt: skip
    body = []
    for r in rows:
        nfe = r["nfe_forward"] + r["nfe_backward"]
        reg = " / ".join(
            f"{r[f'{k}_first']:.3g} -> {r[f'{k}_last_quarter']:.3g}"
            for k in ("kinetic", "jacobian")
            if f"{k}_first" in r
        )
        ratios = ["-", "-", "-"]
        if ref is not None:
            ref_nfe = ref["nfe_forward"] + ref["nfe_backward"]
            ratios = [
                f"{ref_nfe / nfe:.2f}x fewer",
                f"{ref['s_per_step_cpu'] / r['s_per_step_cpu']:.2f}x faster",
                f"{100 * (r['test_acc'] - ref['test_acc']):+.2f}",
            ]
        body.append([
            r["setting"],
            f"{r['nfe_forward']:.1f}",
            f"{r['nfe_backward']:.1f}",
            f"{r['nfe_forward_last_quarter'] + r['nfe_backward_last_quarter']:.1f}",
            f"{r['s_per_step_wall'] * steps_per_epoch:.0f}",
            f"{r['s_per_step_cpu'] * steps_per_epoch:.0f}",
            f"{100 * r['test_acc']:.2f}",
            f"{r['test_nfe']:.1f}",
            reg or "-",
            *ratios,
        ])  # fmt: skip
    return markdown_table(headers, body)


def combined_rows(saved: list[dict]) -> list[dict]:
    """The rows of several --json files, a setting that more of them share (the ``none`` row
    of one --runs folder) once; the same setting measured differently is an error."""
    rows: dict[str, dict] = {}
    for run in saved:
        for row in run["rows"]:
            kept = rows.setdefault(row["setting"], row)
            if kept != row:
                raise SystemExit(
                    f"--combine: the files hold two different runs of {row['setting']!r}; "
                    "combine files of one --runs folder, or rename one setting."
                )
    return list(rows.values())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4, help="epochs per setting (zoo: 4)")
    parser.add_argument("--max-steps", type=int, default=0, help="stop each run after N steps")
    parser.add_argument(
        "--train-size", type=int, default=0, help="train on the first N images of the training "
        "split (0: all 55,000); an epoch is then N / 32 steps",
    )  # fmt: skip
    parser.add_argument("--test-size", type=int, default=0, help="test images (0: all 10,000)")
    parser.add_argument("--test-batch", type=int, default=256)
    parser.add_argument(
        "--weights", type=float, nargs="*", default=[0.01, 0.001, 0.0001],
        help="RNODE weights (kinetic = jacobian = w), one run each",
    )  # fmt: skip
    parser.add_argument(
        "--kinetic", type=float, nargs="*", default=[],
        help="kinetic-energy-only weights (no Jacobian term: no extra vector-Jacobian product)",
    )  # fmt: skip
    parser.add_argument(
        "--steer", type=float, nargs="*", default=[0.5], help="STEER half-widths b (T = 1)"
    )
    parser.add_argument(
        "--warm-start", action="store_true", help="add the setting `warm start` (no "
        "regularisation, SolverConfig(warm_start=True)) and `<setting> + warm start` for each "
        "regularised one",
    )  # fmt: skip
    parser.add_argument("--only", nargs="*", help="run only these settings (names as printed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--json", type=Path, help="also write every number here")
    parser.add_argument(
        "--runs", type=Path, help="train each setting in its own folder here, with last.ckpt "
        "every --checkpoint-every steps: rerunning the same command resumes a stopped setting "
        "and reuses finished ones (for the hours-long full measurement; keep it outside the "
        "work tree, e.g. $HOME/nodezoo-build/regularisation_4ep)",
    )  # fmt: skip
    parser.add_argument("--checkpoint-every", type=int, default=100, help="steps (--runs)")
    parser.add_argument(
        "--width", type=int, default=0, help="channels of the model (0: the recipe's; smaller "
        "only for smoke tests of this script)",
    )  # fmt: skip
    parser.add_argument(
        "--val-size", type=int, default=None, help="images held out of training as the "
        "recipe's validation split (default: the recipe's; for tiny test data sets)",
    )  # fmt: skip
    parser.add_argument(
        "--combine", type=Path, nargs="+", help="print one table from the --json files of "
        "separate runs (e.g. one process per setting) instead of training",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipe = yaml.safe_load(RECIPE.read_text())
    if args.combine:
        saved = [json.loads(path.read_text()) for path in args.combine]
        rows = combined_rows(saved)
        combined_by = shlex.join(
            ["python", "benchmarks/regularisation.py", *(sys.argv[1:] if argv is None else argv)]
        )
        args = argparse.Namespace(**saved[0]["args"])
        args.command = [run["command"] for run in saved]
        args.combined_by = combined_by
        args.json = None
    else:
        runs = settings(args.weights, args.kinetic, args.steer, args.warm_start)
        if args.only:
            unknown = sorted(set(args.only) - set(runs))
            if unknown:
                raise SystemExit(f"--only: unknown setting(s) {unknown}; valid: {sorted(runs)}.")
            runs = {k: v for k, v in runs.items() if k in args.only}
        run = run_or_resume if args.runs else run_setting
        rows = [run(name, reg, solver, recipe, args) for name, (reg, solver) in runs.items()]
        args.command = [
            shlex.join(
                [
                    "python",
                    "benchmarks/regularisation.py",
                    *(sys.argv[1:] if argv is None else argv),
                ]
            )
        ]
    report(rows, recipe, args)


def report(rows: list[dict], recipe: dict, args) -> None:
    """The table with a header saying what was run (and whether it was a short run)."""
    batch = recipe["data"]["init_args"]["batch_size"]
    train_images = 55_000 if not args.train_size else min(args.train_size, 55_000)
    steps_per_epoch = -(-train_images // batch)
    full_epoch = -(-55_000 // batch)
    width, val_size = getattr(args, "width", 0), getattr(args, "val_size", None)
    short = bool(args.train_size or args.max_steps or args.test_size or width or val_size)
    label = "SHORT RUN (smoke test, not the measurement)" if short else "full run"
    print(f"## Regularised dynamics, Fashion-MNIST ODE-Net: {label}\n")
    print("Command(s):\n\n" + "\n".join(f"    {c}" for c in args.command) + "\n")
    if getattr(args, "combined_by", None):
        print(f"One table from their --json files:\n\n    {args.combined_by}\n")
    print(
        f"Model and data: {RECIPE.relative_to(RECIPE.parents[2])} (dopri5 1e-3 adjoint, AdamW "
        f"one-cycle over the run, batch {batch}); {rows[0]['steps']} training steps per "
        f"setting ({rows[0]['epochs']} epoch(s) of {train_images} images), seed {args.seed}, "
        f"{args.threads} thread(s); test on {args.test_size or 10_000} images, last weights"
        f"{f'; width {width} instead of the recipe value' if width else ''}"
        f"{f'; {val_size} validation images held out' if val_size is not None else ''}. "
        f"Machine: {machine_description()}, shared with other jobs.\n"
    )
    print(table(rows, full_epoch))
    print(
        f"\ns/epoch = mean s/step x {full_epoch} steps (a full 55,000-image epoch"
        f"{'; EXTRAPOLATED from the short run' if steps_per_epoch != full_epoch else ''}). "
        "Ratios are against `none`: NFE = forward + backward per step over the run; epoch "
        "ratio from CPU seconds. RNODE w: kinetic = jacobian = w (integrals summed over the "
        "2304 state entries per image, batch mean); STEER b: end time ~ U(1 - b, 1 + b) in "
        "training, 1 at test; warm start: each training solve (forward and adjoint) starts "
        "with the step size the previous one settled on, evaluation as usual."
    )
    if args.json:
        saved_args = {k: v for k, v in vars(args).items() if k not in ("json", "command")}
        saved_args["combine"] = None
        record = {"command": args.command[0], "args": saved_args, "rows": rows}
        write_atomic(args.json, json.dumps(record, indent=2, default=str))


if __name__ == "__main__":
    main()
