"""Tiny image data sets written in the real on-disk formats (gzipped IDX, pickled CIFAR-10
batches), for the torchvision loaders' tests."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from pathlib import Path

import numpy as np

IDX_FILES = {  # torchvision's names: (train?, images?)
    "train-images-idx3-ubyte.gz": (True, True),
    "train-labels-idx1-ubyte.gz": (True, False),
    "t10k-images-idx3-ubyte.gz": (False, True),
    "t10k-labels-idx1-ubyte.gz": (False, False),
}


def tiny_images(n: int, shape: tuple[int, ...], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images whose mean brightness encodes the label, so a model can learn them."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    rng.shuffle(labels)
    base = (labels * 25).astype(np.float64).reshape(n, *([1] * len(shape)))
    images = np.clip(base + rng.integers(0, 30, size=(n, *shape)), 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def write_idx_gz(path: Path, array: np.ndarray) -> None:
    """The IDX format (big-endian magic 0x0000_08_<ndim>, big-endian int32 sizes, uint8 data)."""
    header = struct.pack(">I", 0x0800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.tobytes())


def write_tiny_idx(folder: Path, n_train: int = 64, n_test: int = 32) -> Path:
    """The four gzipped IDX files of an MNIST-like set (28×28) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    splits = {True: tiny_images(n_train, (28, 28), 0), False: tiny_images(n_test, (28, 28), 1)}
    for name, (train, is_images) in IDX_FILES.items():
        images, labels = splits[train]
        write_idx_gz(folder / name, images if is_images else labels)
    return folder


def write_tiny_cifar10(root: Path, per_batch: int = 8) -> dict[str, str]:
    """``root/cifar-10-batches-py`` with five training batches, a test batch and the meta file,
    pickled like the real ones; returns each file's md5 (torchvision checks them)."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for seed, name in enumerate(names):
        images, labels = tiny_images(per_batch, (3, 32, 32), seed)
        entry = {"data": images.reshape(per_batch, -1), "labels": labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {"label_names": [f"class{i}" for i in range(10)]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta))
    return {
        name: hashlib.md5((folder / name).read_bytes()).hexdigest()
        for name in [*names, "batches.meta"]
    }
