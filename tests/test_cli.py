"""The ``nodezoo`` command on real recipes: fit, DDP on two processes, resume, bad input.

Runs that train are real ``nodezoo`` processes on tiny IDX files; the callbacks below are loaded
into them by class path (``tests/`` is on their PYTHONPATH) to record what each process saw.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import yaml

from nodezoo.callbacks import ode_blocks
from nodezoo.cli import COMMANDS, LIGHTNING_SUBCOMMANDS, main

REPO = Path(__file__).resolve().parents[1]
RECIPES = sorted((REPO / "recipes").glob("*/*.yaml"))
IMAGE_RECIPES = [r for r in RECIPES if r.parent.name in ("mnist", "fashion_mnist", "cifar10")]
FASHION_ODENET = REPO / "recipes" / "fashion_mnist" / "odenet.yaml"
NODEZOO = Path(sys.executable).parent / "nodezoo"  # the installed console script


# ------------------------------------------------------------------ callbacks run inside `nodezoo`
def optimizer_state(trainer: pl.Trainer) -> list[torch.Tensor]:
    """Every tensor the optimizer keeps per parameter (AdamW: step, exp_avg, exp_avg_sq)."""
    optimizer = trainer.optimizers[0]
    return [
        value.clone()
        for group in optimizer.param_groups
        for p in group["params"]
        for _, value in sorted(optimizer.state[p].items())
        if isinstance(value, torch.Tensor)
    ]


def record_state(trainer: pl.Trainer, pl_module: pl.LightningModule, path: str) -> None:
    torch.save(
        {
            "global_step": trainer.global_step,
            "optimizer": optimizer_state(trainer),
            "params": [p.detach().clone() for p in pl_module.parameters()],
        },
        path,
    )


class KillAtStep(pl.Callback):
    """Records the training state at ``record_step``, then dies like a killed job at ``kill_step``
    (``os._exit``: no exception handling, no checkpoint on the way out)."""

    def __init__(self, record_step: int, kill_step: int, out_dir: str):
        self.record_step, self.kill_step, self.out_dir = record_step, kill_step, out_dir

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.record_step:
            record_state(trainer, pl_module, f"{self.out_dir}/before_kill.pt")
        if trainer.global_step == self.kill_step:
            os._exit(17)


class RecordAtTrainStart(pl.Callback):
    """Records the state a resumed run starts from (after Lightning restored the checkpoint)."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_start(self, trainer, pl_module):
        record_state(trainer, pl_module, f"{self.out_dir}/resumed.pt")


class RecordRankResult(pl.Callback):
    """Writes each rank's parameter hash and per-step NFE to ``rank<k>.json``."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.nfe: list[int] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.nfe.append(sum(b.nfe_forward for b in ode_blocks(pl_module)))

    def on_train_end(self, trainer, pl_module):
        digest = hashlib.sha256()
        for p in pl_module.parameters():
            digest.update(p.detach().cpu().numpy().tobytes())
        result = {
            "rank": trainer.global_rank,
            "world_size": trainer.world_size,
            "global_step": trainer.global_step,
            "param_sha256": digest.hexdigest(),
            "nfe_forward_per_step": self.nfe,
        }
        Path(self.out_dir, f"rank{trainer.global_rank}.json").write_text(json.dumps(result))


# ------------------------------------------------------------------ helpers
def tiny_run_args(data_dir: Path, run_dir: Path) -> list[str]:
    """Overrides that shrink a recipe to seconds: tiny data and model, few batches."""
    return [
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.val_size=16",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
        "--model.init_args.width=8",
        "--trainer.limit_val_batches=1",
        "--trainer.max_epochs=1",
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={run_dir}",
    ]


def callback_arg(cls: type, **init_args) -> str:
    spec = {"class_path": f"test_cli.{cls.__name__}", "init_args": init_args}
    return f"--trainer.callbacks+={json.dumps(spec)}"


def run_nodezoo(args: list[str], env: dict[str, str], timeout: float = 240):
    """``nodezoo <args>`` as its own process; a hang (e.g. a DDP deadlock) fails the test."""
    return subprocess.run(
        [sys.executable, str(NODEZOO), *args],
        env=env,
        cwd=env.get("WANDB_DIR", None),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_ok(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr[-4000:]}"


# ------------------------------------------------------------------ real runs
@pytest.mark.slow
def test_ddp_on_two_processes_ends_with_identical_parameters(tmp_path, tiny_fashion_dir, clean_env):
    """Two gloo ranks see different batches, so dopri5 takes different numbers of steps on each
    (checked below: otherwise this test would not exercise that case); gradients are
    all-reduced once per backward, so that must neither hang (subprocess timeout) nor diverge."""
    args = [
        "fit",
        f"--config={FASHION_ODENET}",
        *tiny_run_args(tiny_fashion_dir, tmp_path / "run"),
        "--trainer.max_epochs=2",
        "--trainer.devices=2",
        "--trainer.strategy=ddp",
        "--trainer.logger=false",
        "--trainer.limit_train_batches=3",
        # tight tolerances make the step count depend on the batch (at 1e-3 the tiny model
        # takes 32 evaluations on every batch)
        "--model.init_args.solver={rtol: 1.0e-6, atol: 1.0e-6}",
        callback_arg(RecordRankResult, out_dir=str(tmp_path)),
    ]
    assert_ok(run_nodezoo(args, clean_env, timeout=300))
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert [r["global_step"] for r in ranks] == [6, 6]
    assert ranks[0]["param_sha256"] == ranks[1]["param_sha256"]
    nfe = [r["nfe_forward_per_step"] for r in ranks]
    assert all(n >= 6 for steps in nfe for n in steps)
    assert nfe[0] != nfe[1], f"ranks took the same solver steps {nfe}: pick data where they differ"


@pytest.mark.slow
def test_fit_killed_mid_epoch_resumes_from_last_ckpt(tmp_path, tiny_fashion_dir, clean_env):
    """A recipe run killed mid-epoch, then ``--ckpt_path last``: the second run starts at the
    step and optimizer state of the mid-epoch ``last.ckpt`` and finishes like any fit
    (exit 0, checkpoints, merged config, offline W&B run in the run directory)."""
    run_dir = tmp_path / "run"
    base = [
        "fit",
        f"--config={FASHION_ODENET}",
        *tiny_run_args(tiny_fashion_dir, run_dir),
        "--trainer.limit_train_batches=6",
        "--last_checkpoint.every_n_train_steps=2",
    ]
    killed = run_nodezoo(
        [
            *base,
            "--trainer.logger=false",
            callback_arg(KillAtStep, record_step=2, kill_step=3, out_dir=str(tmp_path)),
        ],
        clean_env,
    )
    assert killed.returncode == 17, killed.stderr[-4000:]
    ckpt = torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 2  # written mid-epoch, before the kill at step 3

    resumed = run_nodezoo(
        [*base, "--ckpt_path=last", callback_arg(RecordAtTrainStart, out_dir=str(tmp_path))],
        clean_env,
    )
    assert_ok(resumed)
    before = torch.load(tmp_path / "before_kill.pt", weights_only=False)
    after = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert after["global_step"] == before["global_step"] == 2
    assert len(after["optimizer"]) == len(before["optimizer"]) > 0
    for a, b in zip(after["optimizer"], before["optimizer"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(after["params"], before["params"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    final = torch.load(
        run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert final["global_step"] > 2
    assert final["hyper_parameters"]["backbone"] == "odenet"
    assert list((run_dir / "checkpoints").glob("best-epoch000.ckpt"))  # best by val/acc
    assert (run_dir / "config.yaml").is_file()  # the merged recipe, for reproduction
    assert list((run_dir / "wandb").glob("offline-run-*/run-*.wandb"))


# ------------------------------------------------------------ parsing and bad input (in process)
@pytest.mark.parametrize("recipe", IMAGE_RECIPES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_recipe_parses(recipe, capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", f"--config={recipe}", "--print_config"])
    assert info.value.code == 0
    printed = capsys.readouterr().out
    assert "class_path: nodezoo.models.classifier.ImageClassifier" in printed
    assert "nodezoo.callbacks.SolverStatsMonitor" in printed
    assert "nodezoo.callbacks.ResourceMonitor" in printed


def test_command_line_overrides_reach_the_config(capsys):
    with pytest.raises(SystemExit):
        main(["fit", f"--config={FASHION_ODENET}", "--trainer.max_epochs=1", "--print_config"])
    assert "max_epochs: 1\n" in capsys.readouterr().out


def test_one_solver_key_on_the_command_line_keeps_the_others_and_its_type(capsys):
    """``--model.init_args.solver.KEY VALUE`` changes that key only, parsed as YAML (a bool
    stays a bool, which SolverConfig insists on), keeping the recipe's other solver keys."""
    with pytest.raises(SystemExit):
        main(["fit", f"--config={FASHION_ODENET}", "--model.init_args.solver.warm_start=true",
              "--model.init_args.solver.rtol=1e-4", "--print_config"])  # fmt: skip
    solver = yaml.safe_load(capsys.readouterr().out)["model"]["init_args"]["solver"]
    assert solver == {
        "method": "dopri5", "rtol": 1e-4, "atol": 1e-3, "gradient": "adjoint",
        "warm_start": True,
    }  # fmt: skip


def nowhere(tmp_path) -> list[str]:
    """Overrides that keep an in-process run (should a check fail) away from the repo and data."""
    return [
        f"--trainer.default_root_dir={tmp_path}",
        f"--data.init_args.data_dir={tmp_path / 'no_data'}",
        f"--data.init_args.system_dir={tmp_path / 'no_system_copy'}",
        "--trainer.logger=false",
    ]


def short_error(capsys) -> str:
    """The error comes first and alone: one ``nodezoo fit: error:`` line, no usage text."""
    err = capsys.readouterr().err
    assert err.startswith("nodezoo fit: error: ") and err.count("\n") == 1, err
    return err


@pytest.mark.parametrize(
    "typo, named",
    [
        ("--trainer.max_epoch=1", "--trainer.max_epoch"),  # not an abbreviation of max_epochs
        ("--seed_everythin=1", "--seed_everythin"),  # a top-level key
    ],
)
def test_misspelled_key_on_the_command_line_fails_first_and_short(tmp_path, capsys, typo, named):
    code = main(["fit", f"--config={FASHION_ODENET}", *nowhere(tmp_path), typo])
    assert code == 2
    err = short_error(capsys)
    assert f"unrecognized arguments: {named}" in err and "nodezoo fit --help" in err


@pytest.mark.parametrize(
    "old, typo",
    [("lr_warmup:", "lr_warmpu:"), ("seed_everything:", "seed_everythin:")],
)
def test_misspelled_key_in_a_recipe_fails_first_and_short(tmp_path, capsys, old, typo):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text(FASHION_ODENET.read_text().replace(old, typo))
    code = main(["fit", f"--config={recipe}", *nowhere(tmp_path)])
    assert code == 2
    assert typo.rstrip(":") in short_error(capsys)


def test_missing_dataset_says_how_to_get_it(tmp_path, capsys):
    code = main(["fit", f"--config={FASHION_ODENET}", *nowhere(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "download: true" in err and "apt-get install dataset-fashion-mnist" in err


def test_model_that_does_not_fit_the_data_is_rejected(tmp_path, capsys):
    code = main(
        ["fit", f"--config={FASHION_ODENET}", *nowhere(tmp_path), "--model.init_args.num_classes=5"]
    )
    assert code == 2
    assert "num_classes=5" in capsys.readouterr().err


def test_invalid_model_argument_is_reported_without_a_traceback(tmp_path, capsys):
    code = main(
        [
            "fit",
            f"--config={FASHION_ODENET}",
            *nowhere(tmp_path),
            "--model.init_args.backbone=odenett",
        ]
    )
    assert code == 2
    assert "odenett" in capsys.readouterr().err


def test_unknown_command_lists_the_known_ones(capsys):
    assert main(["fitt"]) == 2
    err = capsys.readouterr().err
    assert "'fitt'" in err and all(verb in err for verb in LIGHTNING_SUBCOMMANDS)
    assert set(LIGHTNING_SUBCOMMANDS) <= set(COMMANDS)


def test_threads_option_sets_torch_threads_for_any_verb(capsys):
    import torch

    before = torch.get_num_threads()
    try:
        assert main(["--threads", "1", "list"]) == 0
        assert torch.get_num_threads() == 1
        assert main(["--threads=2", "list"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "odenet-fashion-mnist" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--threads", "0", "list"], ["--threads", "two"], ["--threads"]])
def test_threads_option_rejects_what_is_not_a_count(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("nodezoo: error: --threads needs a whole number of at least 1, got ")
    assert "usage: nodezoo [--threads N] <command>" in err
