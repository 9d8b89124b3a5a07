"""How far the ODE-Net's training gradient is from the exact one, per gradient mode, with and
without ``warm_start``.

The solver's tolerance bounds the local error of the state, not the error of the gradient, and
a solve that starts with a cautious step is more accurate than its tolerance asks. So a change
that takes fewer steps at the same tolerance (``warm_start``) can move the gradient further from
the exact one; this measures by how much. Each contender's gradient of the cross-entropy on the
same training batches (fixed weights, no optimizer step; the warm contenders learn their first
steps batch after batch, as in training) is compared with the gradient of a float64 solve at
rtol = atol = 1e-8 (backprop), as ``||g - g_ref|| / ||g_ref||``. Everything runs in float64 so
that only the solver's error shows.

    nice python benchmarks/gradient_error.py --odenet-weights odenet-fashion-mnist
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from _measure import machine_description
from classifier_epoch import DATA, build_model, load_fashion_mnist, trained_weights

# contender -> changes to the recipe's solver (dopri5, rtol = atol = 1e-3, adjoint)
CONTENDERS = {
    "adjoint": {},
    "adjoint, warm start": {"warm_start": True},
    "backprop": {"gradient": "backprop"},
    "backprop, warm start": {"gradient": "backprop", "warm_start": True},
    # at equal gradient error: how much tighter must a warm solve be, and what does it cost?
    "adjoint, warm start, tol 3e-4": {"warm_start": True, "rtol": 3e-4, "atol": 3e-4},
    "backprop, warm start, tol 3e-4": {
        "gradient": "backprop",
        "warm_start": True,
        "rtol": 3e-4,
        "atol": 3e-4,
    },
}
REFERENCE = {"gradient": "backprop", "rtol": 1e-8, "atol": 1e-8}


def flat_gradient(model, x, y) -> torch.Tensor:
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def gradients(model, block, solver, batches) -> tuple[list[torch.Tensor], list[int]]:
    """The gradients on every batch with ``solver`` and the NFE (forward + backward) of each."""
    block.solver = solver  # a fresh config: fresh first-step memories
    out, nfe = [], []
    for x, y in batches:
        out.append(flat_gradient(model, x, y))
        nfe.append(block.stats.nfe_forward + block.stats.nfe_backward)
    return out, nfe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--odenet-weights", help="zoo name or folder, or a Lightning .ckpt (default: fresh)"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images, labels = load_fashion_mnist(args.data)
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(args.seed))
    batches = []
    for i in range(args.batches):
        idx = order[i * args.batch : (i + 1) * args.batch]
        batches.append((images[idx].double() / 255, labels[idx]))
    weights = trained_weights(args.odenet_weights) if args.odenet_weights else None
    model, block = build_model("odenet", args.seed, weights)
    model.double().train()
    base = block.solver
    reference, _ = gradients(model, block, base.replace(**REFERENCE), batches)
    print(
        f"ODE-Net ({args.odenet_weights or 'fresh weights, seed ' + str(args.seed)}), float64, "
        f"{args.batches} training batches of {args.batch}; reference: backprop at rtol = atol "
        f"= 1e-8. {machine_description()}; torch {torch.__version__}.\n"
    )
    print(
        "| solver (dopri5, rtol = atol = 1e-3 unless said) | gradient error: median | max "
        "| per batch | NFE/step |"
    )
    print("|---|---:|---:|---|---:|")
    for name, changes in CONTENDERS.items():
        grads, nfe = gradients(model, block, base.replace(**changes), batches)
        errors = [float((g - r).norm() / r.norm()) for g, r in zip(grads, reference, strict=True)]
        print(
            f"| {name} | {statistics.median(errors):.3f} | {max(errors):.3f} | "
            f"{' '.join(f'{e:.2f}' for e in errors)} | {statistics.mean(nfe):.1f} |"
        )
    print(
        "\nThe first batch of a warm contender starts from the automatic first step (nothing "
        "learnt yet), so it equals its cold twin there."
    )


if __name__ == "__main__":
    main()
