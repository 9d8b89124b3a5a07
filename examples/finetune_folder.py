"""Fine-tune the zoo's Fashion-MNIST ODE-Net on a folder of images, as you would on your own.

The images are real: scikit-learn's UCI handwritten digits (1,797 scans of 8x8 pixels), written
as PNG files in torchvision's ImageFolder layout (``<root>/images/{train,val,test}/<digit>/``)
with the split ``DigitsDataModule`` draws (seed 0: 1,200 train, 200 val, 397 test), so the
result sits beside the ``odenet-fashion-mnist-to-digits`` card, which reads the same images from
memory (that recipe has no random crops; the folder recipe has them). Then, as a user would:

    nodezoo fit --config recipes/finetune/odenet_fashion_mnist_to_folder.yaml \\
        --data.init_args.data_dir <root>/images --model.init_args.num_classes 10 ...
    nodezoo publish <root>/run/checkpoints/last.ckpt --out <root>/model

and it prints the test accuracy that ``publish`` measured (``<root>/model/metrics.json``; the
card, ``<root>/model/README.md``, lists the classes).

    python examples/finetune_folder.py [--root runs/finetune_folder] [--epochs 10]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from nodezoo.data import DigitsDataModule

RECIPE = (
    Path(__file__).resolve().parents[1] / "recipes/finetune/odenet_fashion_mnist_to_folder.yaml"
)


def write_digit_folders(out: Path, seed: int = 0) -> dict[str, int]:
    """The digits as 8x8 grey PNGs in ``out/{train,val,test}/<digit>/``; returns the counts."""
    data = DigitsDataModule(image_size=8, seed=seed)  # 8: the scans as they are
    data.setup()
    counts = {}
    for split, dataset in data.splits.items():
        images, labels = dataset.tensors
        pixels = (images[:, 0].numpy() * 255).round().astype(np.uint8)
        for i, (image, label) in enumerate(zip(pixels, labels.tolist(), strict=True)):
            folder = out / split / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image, mode="L").save(folder / f"{i:04d}.png")
        counts[split] = len(labels)
    return counts


def nodezoo(*args: str) -> None:
    command = [sys.executable, "-m", "nodezoo.cli", *args]
    print("$ nodezoo", " ".join(args), flush=True)
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("runs/finetune_folder"))
    parser.add_argument("--epochs", type=int, default=10, help="the recipe's 10")
    args = parser.parse_args(argv)
    images, run, model = args.root / "images", args.root / "run", args.root / "model"
    if not (images / "test").is_dir():
        print("wrote", write_digit_folders(images), "PNG digits to", images)
    start = time.perf_counter()
    nodezoo(
        "fit", "--config", str(RECIPE), f"--data.init_args.data_dir={images}",
        "--model.init_args.num_classes=10", f"--trainer.max_epochs={args.epochs}",
        f"--trainer.default_root_dir={run}", "--trainer.logger=false",
    )  # fmt: skip
    nodezoo("publish", str(run / "checkpoints" / "last.ckpt"), "--out", str(model))
    accuracy = json.loads((model / "metrics.json").read_text())["test/acc"]
    minutes = (time.perf_counter() - start) / 60
    print(f"test accuracy {100 * accuracy:.2f}% on {images / 'test'} ({minutes:.1f} min)")
    return accuracy


if __name__ == "__main__":
    main()
