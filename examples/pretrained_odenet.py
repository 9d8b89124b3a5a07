"""Load a pretrained ODE-Net from the zoo, evaluate it on the Fashion-MNIST test set, and show
how its predictions form along the ODE trajectory.

    python examples/pretrained_odenet.py [--model odenet-fashion-mnist] [--out odenet_demo.png]

Prints test accuracy, loss and NFE per forward pass (recomputed from the weights with
``nodezoo.zoo.evaluate``, the same numbers the model card reports) and writes a figure: test
images with their predicted and true labels, and the class probabilities of each as the
features flow from t=0 to t=1 through the ODE block.
"""

from __future__ import annotations

import argparse
import time

import torch

from nodezoo import zoo
from nodezoo.zoo.evaluation import build_datamodule, recipe_of

FASHION_CLASSES = (
    "T-shirt", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="odenet-fashion-mnist", help="zoo name, folder or org/name")
    p.add_argument("--data-dir", default=None, help="override the recipe's data_dir")
    p.add_argument("--limit-batches", type=int, default=None, help="evaluate on fewer batches")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--out", default="odenet_demo.png", help="figure path ('' to skip)")
    args = p.parse_args(argv)

    start = time.perf_counter()
    model = zoo.from_pretrained(args.model)
    print(f"loaded {args.model}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"solver {model.solver.method} rtol={model.solver.rtol}")  # fmt: skip
    metrics = zoo.evaluate(
        model=model,
        recipe=recipe_of(args.model),
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        limit_batches=args.limit_batches,
    )
    print(
        f"test accuracy {100 * metrics['test/acc']:.2f}% on {metrics['test/samples']} images, "
        f"loss {metrics['test/loss']:.4f}, NFE per forward pass "
        f"{metrics.get('test/nfe_forward', 0):.1f}  ({time.perf_counter() - start:.0f}s)"
    )
    if args.out:
        _plot(model, args, args.out)
        print(f"wrote {args.out}")
    return metrics


def _plot(model, args, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datamodule = build_datamodule(
        recipe_of(args.model), data_dir=args.data_dir, batch_size=8, num_workers=0
    )
    datamodule.prepare_data()
    datamodule.setup("test")
    x, y = next(iter(datamodule.test_dataloader()))
    t = torch.linspace(0, 1, 21)
    with torch.no_grad():
        probs = model.logits_along_trajectory(x, t).softmax(-1)  # (T, B, classes)
    names = FASHION_CLASSES if probs.shape[-1] == 10 else [str(i) for i in range(probs.shape[-1])]
    n = x.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 4.6))
    for i in range(n):
        pred = int(probs[-1, i].argmax())
        axes[0, i].imshow(x[i, 0], cmap="gray")
        axes[0, i].set_title(f"{names[pred]}\n(true {names[int(y[i])]})", fontsize=8,
                             color="green" if pred == int(y[i]) else "red")  # fmt: skip
        axes[0, i].axis("off")
        axes[1, i].plot(t, probs[:, i, int(y[i])], "g-", label="true class")
        axes[1, i].plot(t, probs[:, i].max(-1).values, "k:", label="top class")
        axes[1, i].set_ylim(0, 1.02)
        axes[1, i].set_xlabel("ODE time t", fontsize=8)
        axes[1, i].tick_params(labelsize=7)
    axes[1, 0].set_ylabel("probability", fontsize=8)
    axes[1, 0].legend(fontsize=6, loc="upper left")
    fig.suptitle(f"{args.model}: predictions form along the ODE trajectory", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
