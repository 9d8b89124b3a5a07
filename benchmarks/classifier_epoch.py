"""Seconds per Fashion-MNIST training epoch of the recipe-sized ODE-Net and ResNet, and their
ratio, measured in one process.

The models are those of ``recipes/fashion_mnist/{odenet,resnet}.yaml`` (width 64; the ODE-Net
solves dopri5 at rtol = atol = 1e-3 with adjoint gradients; the ResNet has 6 blocks), trained
with the recipes' AdamW (lr 3e-3, weight decay 0.01, no schedule) on batches of 32 real
Fashion-MNIST training images. All models see the same batches; their steps are interleaved
(A, B, A, B, ...) so load from other processes hits them alike. Each step is timed on two
clocks: wall time and this process's CPU time (on a shared machine the CPU-time ratio is the
steadier one). s/epoch is EXTRAPOLATED: median s/step x the recipe's 1719 steps per epoch
(55000 training images / 32), optimizer steps only (no data loading, no validation).

Contenders (``--models``): ``odenet`` (this checkout's field), ``odenet-legacy`` (the field as
it was before issue 13, from ``_legacy_field.py``, same weights), ``odenet-torchdiffeq`` (the
same model solved by torchdiffeq), ``odenet-backprop`` and ``odenet-checkpoint`` (the recipe's
model with the other gradient modes), ``odenet-warm`` and ``odenet-backprop-warm`` (with
``SolverConfig(warm_start=True)``: each training solve starts with the step size the previous
one settled on; the warm-up steps let it learn), ``odenet-rnode`` (``odenet_rnode.yaml``: warm
start and kinetic regularisation, its penalty in the loss), ``resnet``.

``--odenet-weights`` starts every ODE-Net from trained weights (a zoo name or folder, or a
Lightning checkpoint): a trained model's solves take more steps than a fresh one's, so the
per-step cost late in training differs from the first steps'.

    nice python benchmarks/classifier_epoch.py --steps 20
    nice python benchmarks/classifier_epoch.py --models odenet odenet-legacy resnet --steps 20
    nice python benchmarks/classifier_epoch.py --models odenet odenet-warm resnet \
        --odenet-weights odenet-fashion-mnist
    python benchmarks/classifier_epoch.py --device cuda --steps 50   # on a GPU: read wall time

On CUDA each step is synchronised before its clock stops; CPU time does not see the GPU, so
the wall-clock columns are the ones to read there.
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
from _legacy_field import LegacyConvODEField
from _measure import machine_description

from nodezoo.models.classifier import ImageClassifier
from nodezoo.nn import ODEBlock, regularisation_loss

DATA = Path("/usr/share/datasets/fashion-mnist")
TRAIN_IMAGES = 55000  # the recipes hold out 5000 of the 60000 for validation
RECIPE = dict(width=64, mean=[0.2860], std=[0.3530])
MODELS = {
    "odenet": dict(backbone="odenet"),
    "odenet-legacy": dict(backbone="odenet"),
    "odenet-torchdiffeq": dict(backbone="odenet", solver={"backend": "torchdiffeq"}),
    # the recipe's solver with the other two gradient modes (same weights as "odenet")
    "odenet-backprop": dict(backbone="odenet", solver={"gradient": "backprop"}),
    "odenet-checkpoint": dict(backbone="odenet", solver={"gradient": "checkpoint"}),
    "odenet-warm": dict(backbone="odenet", solver={"warm_start": True}),
    "odenet-backprop-warm": dict(
        backbone="odenet", solver={"gradient": "backprop", "warm_start": True}
    ),
    # recipes/fashion_mnist/odenet_rnode.yaml: warm start and kinetic regularisation (in the loss)
    "odenet-rnode": dict(
        backbone="odenet", solver={"warm_start": True}, regularisation={"kinetic": 3e-4}
    ),
    "resnet": dict(backbone="resnet", depth=6),
}


def read_idx(path: Path, header: int) -> np.ndarray:
    """Raw bytes of an IDX .gz file after its header (16 bytes for images, 8 for labels)."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


def load_fashion_mnist(root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(root / "train-images-idx3-ubyte.gz", 16).reshape(-1, 1, 28, 28)
    labels = read_idx(root / "train-labels-idx1-ubyte.gz", 8)
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def ode_block(model: torch.nn.Module) -> ODEBlock | None:
    blocks = [m for m in model.modules() if isinstance(m, ODEBlock)]
    return blocks[0] if blocks else None


def trained_weights(source: str) -> dict[str, torch.Tensor]:
    """An ODE-Net's state dict from a Lightning checkpoint (``.ckpt``) or a zoo name/folder."""
    if source.endswith(".ckpt"):
        return torch.load(source, map_location="cpu", weights_only=False)["state_dict"]
    from nodezoo.zoo import from_pretrained

    return from_pretrained(source).state_dict()


def build_model(
    name: str, seed: int = 0, odenet_weights: dict | None = None
) -> tuple[ImageClassifier, ODEBlock | None]:
    """The contender ``name`` with weights drawn from ``seed`` (all ODE-Nets get the same, or
    ``odenet_weights``)."""
    torch.manual_seed(seed)
    model = ImageClassifier(**MODELS[name], **RECIPE)
    block = ode_block(model)
    if name == "odenet-legacy":
        block.field = LegacyConvODEField(RECIPE["width"])
        torch.manual_seed(seed)
        model.load_state_dict(ImageClassifier(**MODELS["odenet"], **RECIPE).state_dict())
    if odenet_weights is not None and block is not None:
        model.load_state_dict(odenet_weights)
    return model.train(), block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=["odenet", "resnet"])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per model")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per model first")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--odenet-weights", help="start the ODE-Nets from these weights (zoo name or folder, "
        "or a Lightning .ckpt) instead of a fresh draw",
    )  # fmt: skip
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device} asked for, but torch sees no CUDA device.")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    images, labels = load_fashion_mnist(args.data)
    steps_per_epoch = -(-TRAIN_IMAGES // args.batch)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    models, optimizers, blocks = {}, {}, {}
    weights = trained_weights(args.odenet_weights) if args.odenet_weights else None
    for name in args.models:
        models[name], blocks[name] = build_model(name, args.seed, weights)
        models[name].to(device)
        optimizers[name] = torch.optim.AdamW(models[name].parameters(), lr=3e-3, weight_decay=0.01)
    record = {n: {k: [] for k in ("wall", "cpu", "nfe_f", "nfe_b", "loss")} for n in args.models}

    for step in range(args.warmup + args.steps):
        idx = order[step * args.batch : (step + 1) * args.batch]
        x, y = (images[idx].float() / 255).to(device), labels[idx].to(device)
        for name in args.models:
            model, opt = models[name], optimizers[name]
            sync()
            wall0, cpu0 = time.perf_counter(), time.process_time()
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y)
            penalty = regularisation_loss(model)
            if penalty is not None:
                loss = loss + penalty
            loss.backward()
            opt.step()
            sync()
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            if step >= args.warmup:
                r = record[name]
                r["wall"].append(wall)
                r["cpu"].append(cpu)
                r["loss"].append(loss.item())
                if blocks[name] is not None:
                    r["nfe_f"].append(blocks[name].nfe_forward)
                    r["nfe_b"].append(blocks[name].nfe_backward)

    base = "resnet" if "resnet" in args.models else args.models[-1]
    print(
        f"Fashion-MNIST training steps, batch {args.batch}, {args.threads} thread(s), "
        f"{machine_description()}, device {device}"
        f"{' (' + torch.cuda.get_device_name(device) + ')' if device.type == 'cuda' else ''}; "
        f"torch {torch.__version__}. {args.steps} timed steps per "
        f"model after {args.warmup} warm-up, interleaved; AdamW lr 3e-3, same batches; "
        f"ODE-Nets from {args.odenet_weights or 'a fresh draw (seed ' + str(args.seed) + ')'}. "
        f"s/epoch is EXTRAPOLATED: median s/step x {steps_per_epoch} steps.\n"
    )
    print(
        f"| model | median wall s/step | median CPU s/step | s/epoch wall | s/epoch CPU "
        f"| NFE fwd/bwd | wall / {base} | CPU / {base} | loss first -> last |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    med = {n: {c: statistics.median(record[n][c]) for c in ("wall", "cpu")} for n in args.models}
    for name in args.models:
        r, m = record[name], med[name]
        nfe = (
            f"{statistics.mean(r['nfe_f']):.1f} / {statistics.mean(r['nfe_b']):.1f}"
            if r["nfe_f"]
            else "-"
        )
        print(
            f"| {name} | {m['wall']:.3f} | {m['cpu']:.3f} | {m['wall'] * steps_per_epoch:.0f} "
            f"| {m['cpu'] * steps_per_epoch:.0f} | {nfe} | {m['wall'] / med[base]['wall']:.2f} "
            f"| {m['cpu'] / med[base]['cpu']:.2f} | {r['loss'][0]:.4f} -> {r['loss'][-1]:.4f} |"
        )
    cpu_load = statistics.median(
        w / c for n in args.models for w, c in zip(record[n]["wall"], record[n]["cpu"]) if c > 0
    )
    print(
        f"\nmedian wall / CPU time per step: {cpu_load:.2f} (with {args.threads} thread(s) an "
        f"idle machine gives about 1 / {args.threads}; more means other processes took the cores)."
    )


if __name__ == "__main__":
    main()
