"""Shared fixtures: a tiny Fashion-MNIST in the real on-disk format, a clean subprocess env."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from image_files import write_tiny_idx

torch.set_num_threads(1)  # the test machines are small and shared; threads only contend


@pytest.fixture(scope="session")
def tiny_fashion_dir(tmp_path_factory) -> Path:
    """A data_dir whose FashionMNIST/raw holds tiny gzipped IDX files (64 train, 32 test)."""
    data_dir = tmp_path_factory.mktemp("fashion")
    write_tiny_idx(data_dir / "FashionMNIST" / "raw")
    return data_dir


@pytest.fixture
def clean_env(tmp_path) -> dict[str, str]:
    """An environment for ``nodezoo`` subprocesses: no leftover distributed or pytest variables
    (DDP children re-read them), W&B offline into tmp_path, one thread per process."""
    drop = {
        "MASTER_ADDR",
        "MASTER_PORT",
        "RANK",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "NODE_RANK",
        "LOCAL_WORLD_SIZE",
        "GROUP_RANK",
    }
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("PYTEST_")}
    env.update(
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp_path),
        WANDB_SILENT="true",
        OMP_NUM_THREADS="1",
        MKL_NUM_THREADS="1",
        PYTHONPATH=os.pathsep.join(
            [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
        ),
    )
    return env
