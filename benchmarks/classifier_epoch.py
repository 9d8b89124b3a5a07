"""Seconds per Fashion-MNIST training epoch of the paper's ODE-Net: nodezoo's native solver vs
torchdiffeq behind the same ``SolverConfig`` (dopri5, rtol = atol = 1e-3, adjoint).

Both models start from the same weights and see the same batches; their steps are interleaved so
machine load hits both alike. Only ``--steps`` steps are timed; the epoch time is the median
step time x 469 (60000 / 128), i.e. EXTRAPOLATED, and says so in the table.

    python benchmarks/classifier_epoch.py --steps 8 --threads 1
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nodezoo.models.classifier import ImageClassifier
from nodezoo.nn import ODEBlock

BACKENDS = ("native", "torchdiffeq")
DATA = Path("/usr/share/datasets/fashion-mnist")


def read_idx(path: Path, header: int) -> np.ndarray:
    """Raw bytes of an IDX .gz file after its header (16 bytes for images, 8 for labels)."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def load_fashion_mnist(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(root / "train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    labels = read_idx(root / "train-labels-idx1-ubyte.gz", 8)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per backend")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per backend first")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    images, labels = load_fashion_mnist(args.data)
    steps_per_epoch = -(-len(images) // args.batch)
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(len(images), generator=g)

    torch.manual_seed(args.seed)
    reference = ImageClassifier("odenet").state_dict()
    models, optimizers, blocks = {}, {}, {}
    for backend in BACKENDS:
        model = ImageClassifier("odenet", solver={"backend": backend})
        model.load_state_dict(reference)
        models[backend] = model.train()
        optimizers[backend] = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        (blocks[backend],) = [m for m in model.modules() if isinstance(m, ODEBlock)]
    record = {b: {"time": [], "nfe_f": [], "nfe_b": [], "loss": []} for b in BACKENDS}

    for step in range(args.warmup + args.steps):
        idx = order[step * args.batch : (step + 1) * args.batch]
        x, y = images[idx].float() / 255, labels[idx]
        for backend in BACKENDS:
            model, opt = models[backend], optimizers[backend]
            start = time.perf_counter()
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            elapsed = time.perf_counter() - start
            if step >= args.warmup:
                r = record[backend]
                r["time"].append(elapsed)
                r["nfe_f"].append(blocks[backend].nfe_forward)
                r["nfe_b"].append(blocks[backend].nfe_backward)
                r["loss"].append(loss.item())

    print(
        f"ODE-Net (208k params, dopri5 rtol=atol=1e-3, adjoint) on Fashion-MNIST, batch "
        f"{args.batch}, {args.threads} thread(s), SGD lr 0.1 momentum 0.9, same initial weights "
        f"and batches. {args.steps} timed steps per backend after {args.warmup} warm-up; "
        f"s/epoch is EXTRAPOLATED: median s/step x {steps_per_epoch} steps.\n"
    )
    print(
        "| backend | median s/step | s/epoch (extrapolated) | NFE fwd/step | NFE bwd/step "
        "| ms/NFE | loss first -> last timed step |"
    )
    print("|---|---:|---:|---:|---:|---:|---|")
    for backend in BACKENDS:
        r = record[backend]
        median = statistics.median(r["time"])
        per_nfe = sum(r["time"]) / (sum(r["nfe_f"]) + sum(r["nfe_b"]))
        print(
            f"| {backend} | {median:.3f} | {median * steps_per_epoch:.0f} "
            f"| {statistics.mean(r['nfe_f']):.1f} | {statistics.mean(r['nfe_b']):.1f} "
            f"| {1000 * per_nfe:.1f} | {r['loss'][0]:.4f} -> {r['loss'][-1]:.4f} |"
        )
    speedup = statistics.median(record["torchdiffeq"]["time"]) / statistics.median(
        record["native"]["time"]
    )
    print(
        f"\nnative speed-up over torchdiffeq (median step time ratio): {speedup:.2f}x. "
        "ms/NFE = total step time / (forward + backward NFE): the cost per function "
        "evaluation including solver overhead, so NFE differences are not mistaken for speed."
    )


if __name__ == "__main__":
    main()
