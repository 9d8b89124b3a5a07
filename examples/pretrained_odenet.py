"""Load a pretrained ODE-Net from the zoo, evaluate it on the Fashion-MNIST test set, and show
how its predictions form along the ODE trajectory.

    python examples/pretrained_odenet.py [--model odenet-fashion-mnist] [--out PATH]

Prints test accuracy, loss and NFE per forward pass (recomputed from the weights with
``nodezoo.zoo.evaluate``, the same numbers the model card reports) and writes a figure: test
images with their predicted and true labels, and the probability of the top class (and of the
true class when they differ) as the features flow from t=0 to t=1 through the ODE block. The
figure goes to ``outputs/odenet_demo.png`` (``outputs/`` is git-ignored) unless ``--out`` says
otherwise; the script prints where.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

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
    p.add_argument(
        "--out", default="outputs/odenet_demo.png", help="figure path ('' to skip; git-ignored)"
    )
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
        path = Path(args.out)
        path.parent.mkdir(parents=True, exist_ok=True)
        _plot(model, args, path)
        print(f"wrote the figure to {path.resolve()}")
    return metrics


def _plot(model, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")

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
    fig = demo_figure(x, y, t, probs, names, title=args.model)
    fig.savefig(path, dpi=100)


def demo_figure(x, y, t, probs, names, *, title: str):
    """Top row: the images, titled with the predicted (and true) class; bottom row: the
    probability of the predicted class along t, and of the true class where it differs, each
    named in the panel's legend."""
    import matplotlib.pyplot as plt

    n = x.shape[0]
    fig, axes = plt.subplots(2, n, figsize=(2.2 * n, 5.2), squeeze=False)
    for i in range(n):
        pred, true = int(probs[-1, i].argmax()), int(y[i])
        right = pred == true
        top, bottom = axes[0, i], axes[1, i]
        top.imshow(x[i, 0], cmap="gray")
        top.set_title(f"predicted {names[pred]}\n(true {names[true]})", fontsize=9,
                      color="green" if right else "red")  # fmt: skip
        top.set_xticks([])
        top.set_yticks([])
        label = f"{names[pred]} (top, true)" if right else f"{names[pred]} (top)"
        bottom.plot(t, probs[:, i, pred], "-", color="green" if right else "red", label=label)
        if not right:
            bottom.plot(t, probs[:, i, true], "g--", label=f"{names[true]} (true)")
        bottom.set_ylim(0, 1.02)
        bottom.set_xlabel("ODE time t", fontsize=9)
        bottom.tick_params(labelsize=8)
        bottom.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    axes[0, 0].set_ylabel("test image", fontsize=9)
    axes[1, 0].set_ylabel("class probability", fontsize=9)
    fig.suptitle(f"{title}: predictions form along the ODE trajectory", fontsize=11)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main()
