"""Training data and random state resume exactly: a run killed and resumed from ``last.ckpt``
ends with the weights of one that never stopped (``nodezoo.data.resume``,
``nodezoo.callbacks.RandomState``)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from nodezoo.callbacks import RandomState
from nodezoo.data import FashionMNISTDataModule
from nodezoo.data.resume import SeededItems, TrainingOrder, fit_position, training_loader

REPO = Path(__file__).resolve().parents[2]


class Noisy(Dataset):
    """Item i: i plus a draw from torch's global generator (as a random crop would draw)."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int) -> torch.Tensor:
        return i + torch.rand(())


def keys(order: TrainingOrder) -> list[tuple[int, int]]:
    return list(iter(order))


def test_each_epoch_is_its_own_seeded_permutation_and_resumes_after_the_trained_batches():
    where = {"at": None}
    order = TrainingOrder(Noisy(), batch_size=3, seed=4, position=lambda: where["at"])
    epoch0, epoch1 = keys(order), keys(order)  # outside a fit: each pass the next epoch
    assert [e for e, _ in epoch0] == [0] * 10 and [e for e, _ in epoch1] == [1] * 10
    assert sorted(i for _, i in epoch0) == list(range(10)) != [i for _, i in epoch0]
    assert [i for _, i in epoch0] != [i for _, i in epoch1]
    again = TrainingOrder(Noisy(), batch_size=3, seed=4)
    assert keys(again) == epoch0  # the same seed, the same order
    assert keys(TrainingOrder(Noisy(), batch_size=3, seed=5)) != epoch0

    where["at"] = (1, 2)  # a fit resumed in epoch 1 after 2 trained batches
    assert keys(order) == epoch1[6:]
    where["at"] = (1, 4)  # all 4 batches trained: the checkpoint closed the epoch
    assert keys(order) == epoch1
    where["at"] = (0, 0)
    assert keys(order) == epoch0
    done = TrainingOrder(Noisy(), batch_size=2, seed=4, position=lambda: (1, 5))  # exactly all
    fresh = TrainingOrder(Noisy(), batch_size=2, seed=4, position=lambda: (1, 0))
    assert keys(done) == keys(fresh)
    in_order = TrainingOrder(Noisy(), batch_size=1, seed=4, shuffle=False)
    assert keys(in_order) == [(0, i) for i in range(10)]  # e.g. batches that are drawn fresh


def test_fit_position_is_where_a_fit_stands_and_loaders_follow_their_data_modules_trainer():
    def trainer(fn: str, epoch: int, batches: int):
        def progress(n):
            return SimpleNamespace(current=SimpleNamespace(processed=n))

        batches_done = SimpleNamespace(batch_progress=progress(batches))
        loop = SimpleNamespace(epoch_progress=progress(epoch), epoch_loop=batches_done)
        return SimpleNamespace(state=SimpleNamespace(fn=fn), fit_loop=loop)

    assert fit_position(trainer("fit", 3, 7)) == (3, 7)
    assert fit_position(trainer("validate", 3, 7)) is None
    assert fit_position(None) is None
    module = SimpleNamespace(trainer=trainer("fit", 2, 1))
    loader = training_loader(Noisy(), module, batch_size=3, seed=4)
    expected = keys(TrainingOrder(Noisy(), batch_size=3, seed=4, position=lambda: (2, 0)))
    assert [int(x) for batch in loader for x in batch] == [i for _, i in expected[3:]]
    module.trainer = None  # not attached: epochs from 0, whole epochs
    assert len(list(loader)) == 4


def test_loaders_leave_the_global_generator_and_keep_their_batch_size(tiny_fashion_dir):
    def data():
        dm = FashionMNISTDataModule(data_dir=str(tiny_fashion_dir), batch_size=8, val_size=16)
        dm.setup("fit")
        return dm

    torch.manual_seed(0)
    alone = torch.rand(3)
    dm = data()
    torch.manual_seed(0)
    train = list(dm.train_dataloader())
    val = list(dm.val_dataloader())
    assert torch.equal(torch.rand(3), alone)  # building and reading them drew nothing
    assert [len(y) for _, y in train] == [8] * 6 and [len(y) for _, y in val] == [8, 8]
    with_workers = FashionMNISTDataModule(str(tiny_fashion_dir), val_size=16, num_workers=1)
    with_workers.setup("fit")
    assert with_workers.train_dataloader().num_workers == 1  # the loader's own settings pass on
    labels = torch.cat([y for _, y in train])
    plain = torch.tensor([dm.train_set[i][1] for i in range(48)])
    assert sorted(labels.tolist()) == sorted(plain.tolist()) and not torch.equal(labels, plain)


def test_under_ddp_each_rank_takes_every_other_item_of_the_same_order(monkeypatch):
    import nodezoo.data.resume as resume

    alone = keys(TrainingOrder(Noisy(), batch_size=2, seed=4))
    where = {"at": None}
    built = TrainingOrder(Noisy(), batch_size=2, seed=4, position=lambda: where["at"])
    monkeypatch.setattr(resume.dist, "is_initialized", lambda: True)  # a process group starts
    monkeypatch.setattr(resume.dist, "get_world_size", lambda: 2)
    shares = []
    for rank in (0, 1):
        monkeypatch.setattr(resume.dist, "get_rank", lambda rank=rank: rank)
        assert len(built) == 5
        where["at"] = None
        built.set_epoch(0)
        shares.append(keys(built))
        where["at"] = (0, 1)  # resumed after one batch of 2 on each rank
        assert keys(built) == shares[-1][2:]
    assert shares[0] == alone[0::2] and shares[1] == alone[1::2]


def test_seeded_items_draw_from_their_key_alone_and_leave_the_global_generator():
    items = SeededItems(Noisy(), seed=1)
    torch.manual_seed(0)
    first = items[(2, 7)]
    after = torch.rand(())
    torch.manual_seed(123)
    assert torch.equal(items[(2, 7)], first)  # whatever the global state
    torch.manual_seed(0)
    items[(0, 7)]
    assert torch.equal(torch.rand(()), after)  # the global stream did not move
    assert not torch.equal(items[(3, 7)], first)  # another epoch, another draw
    assert not torch.equal(SeededItems(Noisy(), seed=2)[(2, 7)], first)
    assert 3 <= float(items[3]) < 4  # an integer key (evaluation) loads as it is


def test_image_batches_and_augmentation_repeat_and_loaders_leave_the_global_generator(
    tiny_fashion_dir,
):
    def data():
        dm = FashionMNISTDataModule(
            data_dir=str(tiny_fashion_dir), batch_size=8, val_size=16, crop_padding=2,
            horizontal_flip=True,
        )  # fmt: skip
        dm.setup("fit")
        return dm

    torch.manual_seed(0)
    dm = data()
    first = [x for x, _ in dm.train_dataloader()]
    list(dm.val_dataloader())
    expected = torch.rand(())
    torch.manual_seed(0)
    again = [x for x, _ in data().train_dataloader()]
    assert torch.equal(torch.rand(()), expected)  # loading drew nothing from the global stream
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    plain = FashionMNISTDataModule(data_dir=str(tiny_fashion_dir), batch_size=8, val_size=16)
    plain.setup("fit")
    assert not torch.equal(first[0], next(iter(plain.train_dataloader()))[0])  # crops differ


def test_random_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    torch.manual_seed(3)
    saved = RandomState().state_dict()
    torch.save({"callbacks": {"RandomState": saved}}, tmp_path / "c.ckpt")
    expected = (torch.rand(2), np.random.rand(2), random.random())
    loaded = torch.load(tmp_path / "c.ckpt", weights_only=True)["callbacks"]["RandomState"]
    callback = RandomState()
    callback.load_state_dict(loaded)
    torch.rand(5), np.random.rand(5), random.random()  # moved on since
    callback.on_train_start(None, None)
    got = (torch.rand(2), np.random.rand(2), random.random())
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    assert got[2] == expected[2]


# ------------------------------------------------------------------ real runs, killed and resumed
def fit(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nodezoo.cli", "fit", *args],
        env=env, cwd=env["WANDB_DIR"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]


def kill_at(step: int, out_dir: Path) -> str:
    spec = {
        "class_path": "test_cli.KillAtStep",
        "init_args": {"record_step": -1, "kill_step": step, "out_dir": str(out_dir)},
    }
    return f"--trainer.callbacks+={json.dumps(spec)}"


def assert_resumes_exactly(args, stops, tmp_path: Path, clean_env: dict[str, str]) -> None:
    """``args(run, every, workers)`` fits once straight through, then for each ``(run, every,
    kill, workers)`` of ``stops`` is killed at step ``kill`` (a checkpoint every ``every``
    steps) and resumed; every resumed run must end with the straight run's weights, to the bit."""
    env = {**clean_env, "PYTHONPATH": os.pathsep.join([str(REPO), clean_env["PYTHONPATH"]])}
    straight = fit(args("straight", 100, 0), env)
    assert straight.returncode == 0, straight.stderr[-4000:]
    expected = final_weights(tmp_path / "straight")
    for run, every, kill, workers in stops:
        killed = fit([*args(run, every, workers), kill_at(kill, tmp_path)], env)
        assert killed.returncode == 17, killed.stderr[-4000:]
        checkpoint = torch.load(tmp_path / run / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["global_step"] == kill - 1  # the run stopped past a checkpoint
        resumed = fit([*args(run, every, workers), "--ckpt_path=last"], env)
        assert resumed.returncode == 0, resumed.stderr[-4000:]
        assert "dataloader is not resumable" not in resumed.stderr  # Lightning's warning
        got = final_weights(tmp_path / run)
        assert got.keys() == expected.keys()
        different = [k for k in got if not torch.equal(got[k], expected[k])]
        assert not different, f"{run}: resumed weights differ in {different}"


def classifier_args(data_dir: Path, root: Path, batch_size: int, *extra: str):
    """``args(run, every, workers)`` for ``assert_resumes_exactly``: two epochs of the
    Fashion-MNIST ODE-Net recipe on the tiny data, with its random crops and flips, STEER and a
    Hutchinson-probed Jacobian regulariser (random draws on the model side)."""

    def args(run: str, every: int, workers: int) -> list[str]:
        return [
            f"--config={REPO / 'recipes' / 'fashion_mnist' / 'odenet.yaml'}",
            f"--data.init_args.data_dir={data_dir}", "--data.init_args.val_size=16",
            f"--data.init_args.batch_size={batch_size}", f"--data.init_args.num_workers={workers}",
            "--model.init_args.width=8", "--model.init_args.solver.rtol=1e-5",
            "--model.init_args.regularisation={steer: 0.3, jacobian: 0.01}",
            "--trainer.limit_val_batches=1", "--trainer.max_epochs=2",
            "--trainer.accelerator=cpu", "--trainer.logger=false",
            f"--trainer.default_root_dir={root / run}",
            f"--last_checkpoint.every_n_train_steps={every}", *extra,
        ]  # fmt: skip

    return args


@pytest.mark.slow
def test_killed_and_resumed_classifier_ends_with_the_uninterrupted_weights(
    tmp_path, tiny_fashion_dir, clean_env
):
    """Six batches per epoch, killed after a checkpoint in the middle of epoch 2 (with two
    loader workers) or at the end of epoch 1, then resumed with ``--ckpt_path last``."""
    args = classifier_args(tiny_fashion_dir, tmp_path, 8)
    stops = [("mid_epoch", 4, 9, 2), ("epoch_end", 6, 7, 0)]
    assert_resumes_exactly(args, stops, tmp_path, clean_env)


@pytest.mark.slow
@pytest.mark.skipif(
    os.environ.get("NODEZOO_LONG") != "1", reason="3 two-process fits (minutes): NODEZOO_LONG=1"
)
def test_killed_and_resumed_ddp_run_ends_with_the_uninterrupted_weights(
    tmp_path, tiny_fashion_dir, clean_env
):
    """The same on two gloo DDP processes (each rank its share of every epoch: 6 batches of 4),
    killed in the middle of epoch 2 on both ranks."""
    ddp = ("--trainer.devices=2", "--trainer.strategy=ddp")
    args = classifier_args(tiny_fashion_dir, tmp_path, 4, *ddp)
    assert_resumes_exactly(args, [("mid_epoch", 4, 9, 0)], tmp_path, clean_env)


@pytest.mark.slow
def test_killed_and_resumed_cnf_ends_with_the_uninterrupted_weights(tmp_path, clean_env):
    """The 8-Gaussians CNF recipe (fresh points every epoch, Hutchinson's trace with fresh
    Rademacher noise every step, adjoint gradients), killed in the middle of its second epoch."""

    def args(run: str, every: int, workers: int) -> list[str]:
        return [
            f"--config={REPO / 'recipes' / 'density' / 'cnf_8gaussians.yaml'}",
            "--data.init_args.n_train=400", "--data.init_args.batch_size=100",
            "--data.init_args.n_val=100", "--data.init_args.n_test=100",
            "--model.init_args.hidden=8", "--model.init_args.layers=1",
            "--model.init_args.trace=hutchinson", "--model.init_args.solver.rtol=1e-3",
            "--model.init_args.solver.atol=1e-3", "--trainer.max_steps=8",
            "--trainer.check_val_every_n_epoch=1", "--trainer.limit_val_batches=1",
            "--trainer.accelerator=cpu", "--trainer.logger=false",
            f"--trainer.default_root_dir={tmp_path / run}",
            f"--last_checkpoint.every_n_train_steps={every}",
        ]  # fmt: skip

    assert_resumes_exactly(args, [("mid_epoch", 5, 6, 0)], tmp_path, clean_env)
