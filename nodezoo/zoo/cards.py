"""Model cards: the README.md of a zoo folder / Hub repo, rendered from data only.

Every number in a card comes from metrics.json (measured by the run's callbacks or by
``nodezoo evaluate``), config.json or the recipe; nothing is typed in by hand, so a card cannot
drift from its weights. The front matter is Hugging Face's card metadata, built with
huggingface_hub's ``ModelCardData``/``EvalResult`` (``model-index`` carries the measured results,
attributed to ``nodezoo evaluate``, so the Hub shows them).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from .registry import get_architecture

__all__ = ["CITATION", "DATASETS", "METRIC_ROWS", "hub_id", "recipe_facts", "render_card"]

CITATION = """@inproceedings{chen2018neural,
  title     = {Neural Ordinary Differential Equations},
  author    = {Chen, Ricky T. Q. and Rubanova, Yulia and Bettencourt, Jesse and Duvenaud, David},
  booktitle = {Advances in Neural Information Processing Systems},
  volume    = {31},
  year      = {2018}
}"""

# Data module class name -> (display name, Hugging Face dataset id). ``{arg}`` in a display name
# is filled from the recipe's data init args.
DATASETS = {
    "ToyDensityDataModule": ("the 2-D {dataset} density (synthetic, as in FFJORD)", None),
    "DigitsDensityDataModule": (
        "UCI handwritten digits (scikit-learn's copy, 8x8, 17 grey levels, dequantised)",
        None,
    ),
    "FashionMNISTDataModule": ("Fashion-MNIST", "zalando-datasets/fashion_mnist"),
    "MNISTDataModule": ("MNIST", "ylecun/mnist"),
    "CIFAR10DataModule": ("CIFAR-10", "uoft-cs/cifar10"),
    "DigitsDataModule": (
        "UCI handwritten digits (scikit-learn's copy, 8x8 resized to 28x28)",
        None,
    ),
    "SpiralsDataModule": ("Spirals (synthetic, Chen et al. 2018)", None),
    "ImageFolderDataModule": ("the images in `{data_dir}` (one folder per class)", None),
}


def _pct(v) -> str:
    return f"{100 * v:.2f}%"


def _num(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _count(v) -> str:
    return f"{int(v):,}"


def _duration(v) -> str:
    v = float(v)
    return f"{v:.1f} s" if v < 120 else f"{v / 60:.1f} min" if v < 7200 else f"{v / 3600:.2f} h"


# metrics.json key -> (row label, formatter). Keys mirror the names the callbacks log.
METRIC_ROWS: dict[str, tuple[str, Callable[[Any], str]]] = {
    "test/acc": ("Test accuracy", _pct),
    "test/loss": ("Test loss (cross-entropy)", _num),
    "test/rmse": ("Test RMSE", _num),
    "test/rmse_n30": ("Predictive RMSE, 30 observed points", _num),
    "test/rmse_n50": ("Predictive RMSE, 50 observed points", _num),
    "test/rmse_n100": ("Predictive RMSE, 100 observed points", _num),
    "test/nll": ("Test NLL (nats per example, exact trace)", _num),
    "test/bits_per_dim": ("Test bits per dimension", _num),
    "test/seed": ("Test data seed", str),
    "test/samples": ("Test samples", _count),
    "model/params": ("Parameters", _count),
    "test/nfe_forward": ("NFE per forward pass (test set, mean per batch)", _num),
    "nfe/forward": ("NFE forward (training, last epoch, mean per batch)", _num),
    "nfe/backward": ("NFE backward (training, last epoch, mean per batch)", _num),
    "memory/saved_for_backward_mb": ("Activation memory saved for backward (MiB)", _num),
    "memory/peak_cuda_mb": ("Peak CUDA memory (MiB)", _num),
    "memory/peak_rss_mb": ("Peak process RSS (MiB, whole process)", _num),
    "time/epoch_s": ("Training time per epoch", _duration),
    "time/total_s": ("Training time, total", _duration),
    "run/hardware": ("Hardware", str),
    "run/epochs": ("Epochs run", str),
    "run/seed": ("Training seed", str),
    "run/global_step": ("Optimiser steps", _count),
}
# Which metrics go into model-index: the Hub's metric type name and the result's name.
MODEL_INDEX_METRICS = {
    "test/acc": ("accuracy", "test accuracy"),
    "test/loss": ("loss", "test loss"),
    "test/rmse": ("rmse", "test rmse"),
    "test/rmse_n30": ("rmse", "test rmse (30 observed points)"),
    "test/rmse_n50": ("rmse", "test rmse (50 observed points)"),
    "test/rmse_n100": ("rmse", "test rmse (100 observed points)"),
    "test/nll": ("nll", "test nll (nats)"),
    "test/bits_per_dim": ("bits_per_dim", "test bits per dimension"),
}
# Tasks the Hub has as pipeline tags; a family whose task is not one (a CNF's
# "density-estimation") gets the Hub's catch-all "other" and keeps its task among the tags.
HUB_PIPELINE_TAGS = frozenset({"image-classification", "time-series-forecasting"})
# What each task's models are for and what to watch for, beyond what every card says.
INTENDED_USE = {
    "image-classification": (
        "Research and teaching: comparing neural-ODE classifiers with their discrete peers on "
        "{dataset} (accuracy against solver cost, memory and time), and as a starting point for "
        "fine-tuning with `pretrained:` in a nodezoo recipe."
    ),
    "time-series-forecasting": (
        "Research and teaching: comparing latent ODEs with recurrent baselines on {dataset} "
        "(predictive error against solver cost, memory and time) and on irregularly sampled "
        "series of your own."
    ),
    "density-estimation": (
        "Research and teaching: comparing continuous normalizing flows with discrete flows on "
        "{dataset} (test NLL against solver cost, memory and time), densities (`log_prob`) "
        "and samples (`sample`), and as initial weights for a flow trained on similar data."
    ),
}
TASK_LIMITATIONS = {
    "density-estimation": [
        "- `log_prob` in evaluation mode takes the exact trace of the Jacobian: one "
        "vector-Jacobian product per dimension and evaluation, so its cost grows with the "
        "dimension (the card's NLL is exact, not Hutchinson's estimate).",
        "- A flow's density is only meaningful for data prepared like the training data "
        "(same scale and, for discrete data, the same dequantisation).",
    ],
}
# Where the results in model-index come from: the command that recomputes them from the weights.
EVAL_SOURCE = "nodezoo evaluate"
HUB_URL = "https://huggingface.co"
HUB_LIBRARY_URL = f"{HUB_URL}/models?library=nodezoo"
# metrics.json key holding a Markdown comparison with baselines (``nodezoo compare``'s table).
COMPARISON_KEY = "report/comparison"
# metrics.json keys "paper/<key>" hold the published number for "<key>" (shown beside ours).
PAPER_PREFIX = "paper/"


def recipe_facts(recipe_text: str | None) -> dict[str, Any]:
    """What the card needs from a recipe: data module, max_epochs, seed."""
    if not recipe_text:
        return {}
    recipe = yaml.safe_load(recipe_text) or {}
    data = recipe.get("data") or {}
    class_path = data.get("class_path", "") if isinstance(data, dict) else ""
    trainer = recipe.get("trainer") or {}
    return {
        "data_class": class_path.rsplit(".", 1)[-1] or None,
        "data_args": (data.get("init_args") or {}) if isinstance(data, dict) else {},
        "max_epochs": trainer.get("max_epochs"),
        "max_steps": trainer.get("max_steps"),
        "seed": recipe.get("seed_everything"),
    }


def hub_id(ref: str | None) -> str | None:
    """``ref`` if it is a Hub repo id (``org/name``), else None (a zoo name or a local path)."""
    if not ref or Path(ref).exists():
        return None
    parts = str(ref).split("/")
    return str(ref) if len(parts) == 2 and all(parts) and "\\" not in str(ref) else None


def _front_matter(name, entry, metrics, dataset, base_model, repo_id) -> str:
    """The card's YAML metadata, built with huggingface_hub's ``ModelCardData``/``EvalResult``
    (imported here: huggingface_hub reads ``HF_ENDPOINT`` when first imported)."""
    from huggingface_hub import EvalResult, ModelCardData

    display, dataset_id = dataset
    measured = [(k, t, n) for k, (t, n) in MODEL_INDEX_METRICS.items() if k in metrics]
    source_url = f"{HUB_URL}/{repo_id}" if repo_id else HUB_LIBRARY_URL
    results = [
        EvalResult(
            task_type=entry.task,
            dataset_type=dataset_id or display,
            dataset_name=display,
            dataset_split="test",
            metric_type=metric_type,
            metric_value=metrics[key],
            metric_name=metric_name,
            source_name=EVAL_SOURCE,
            source_url=source_url,
        )
        for key, metric_type, metric_name in measured
    ]
    data = ModelCardData(
        model_name=name if results else None,  # the model-index entry's name
        library_name="nodezoo",
        license="mit",
        pipeline_tag=entry.task if entry.task in HUB_PIPELINE_TAGS else "other",
        tags=["nodezoo", "neural-ode", "pytorch", "pytorch-lightning", entry.task],
        datasets=[dataset_id] if dataset_id else None,
        base_model=hub_id(base_model),
        metrics=list(dict.fromkeys(t for _, t, _ in measured)) or None,
        eval_results=results or None,
    )
    return data.to_yaml()


def _results_table(metrics: Mapping[str, Any], max_epochs, max_steps=None) -> list[str]:
    """Quantity | Value, plus a Paper column when metrics.json carries published numbers."""
    paper = {k[len(PAPER_PREFIX) :]: v for k, v in metrics.items() if k.startswith(PAPER_PREFIX)}

    def row(label: str, value: str, key: str | None = None, fmt=_num) -> str:
        cells = [label, value] + ([fmt(paper[key]) if key in paper else ""] if paper else [])
        return "| " + " | ".join(cells) + " |"

    rows = [row("Quantity", "Value") if not paper else "| Quantity | Value | Paper |"]
    rows.append("| --- | --- |" + (" --- |" if paper else ""))
    for key, (label, fmt) in METRIC_ROWS.items():
        if key in metrics and metrics[key] is not None:
            rows.append(row(label, fmt(metrics[key]), key, fmt))
    if max_epochs is not None and int(max_epochs) > 0:  # -1: a step-limited run
        rows.append(row("Recipe's max_epochs", str(max_epochs)))
    if max_steps is not None and int(max_steps) > 0:
        rows.append(row("Recipe's max_steps", _count(max_steps)))
    skip = ("run/", "report/", PAPER_PREFIX)  # facts and reports have sections of their own
    for key in sorted(k for k in metrics if k not in METRIC_ROWS and not k.startswith(skip)):
        rows.append(row(f"`{key}`", _num(metrics[key]), key))
    return rows


def _shortened(metrics: Mapping[str, Any], facts: Mapping[str, Any], max_epochs) -> str | None:
    """The "Shortened run" banner when the run stopped before the recipe's budget (epochs or,
    for step-limited recipes, optimiser steps), else None."""
    epochs = metrics.get("run/epochs")
    if epochs is not None and max_epochs is not None and 0 < int(epochs) < int(max_epochs):
        done, budget, unit = epochs, max_epochs, "epochs"
    else:
        steps = metrics.get("run/global_step")
        max_steps = metrics.get("run/max_steps", facts.get("max_steps"))
        if steps is None or max_steps is None or not 0 < int(steps) < int(max_steps):
            return None
        done, budget, unit = _count(steps), _count(max_steps), "optimiser steps"
    return (
        f"> **Shortened run:** trained for {done} of the recipe's {budget} {unit}; the "
        "results below are for this shorter run, not for the full recipe."
    )


def render_card(
    *,
    name: str,
    config: Mapping[str, Any],
    metrics: Mapping[str, Any],
    recipe_text: str | None = None,
    base_model: str | None = None,
    repo_id: str | None = None,
    label_names: list[str] | None = None,
    picture: str | None = None,
) -> str:
    """The card for a zoo folder, from its config, metrics and recipe. ``base_model``: what it
    was fine-tuned from (in the metadata when it is a Hub id); ``repo_id``: the Hub repo the card
    is for, where the results' source links to; ``label_names``: the classes, in output
    order; ``picture``: the file name of the card's figure in the folder, if it has one."""
    entry = get_architecture(config["architecture"])
    facts = recipe_facts(recipe_text)
    data_class = facts.get("data_class")
    display, dataset_id = DATASETS.get(data_class, (data_class or "unknown data", None))
    try:
        dataset = (display.format(**facts.get("data_args", {})), dataset_id)
    except (KeyError, IndexError):
        dataset = (display, dataset_id)
    max_epochs = metrics.get("run/max_epochs", facts.get("max_epochs"))
    front = _front_matter(name, entry, metrics, dataset, base_model, repo_id)
    backbone = config.get("backbone")
    title = f"{entry.name}" + (f" ({backbone})" if backbone else "")

    lines = ["---", front.rstrip(), "---", "", f"# {name}", ""]
    lines += [
        f"A nodezoo `{title}` model trained on {dataset[0]}."
        if data_class
        else f"A nodezoo `{title}` model. The data it was trained on is not recorded in this "
        "folder (no recipe): pass `recipe=` to `save_pretrained` to record it.",
        "Numbers on this card are generated from `metrics.json`, `config.json` and "
        "`recipe.yaml`; `nodezoo evaluate` recomputes the test metrics from the weights.",
        "",
    ]
    banner = _shortened(metrics, facts, max_epochs)
    if banner:
        lines += [banner, ""]
    headline = entry.headline(metrics)
    if headline in metrics:
        label, fmt = METRIC_ROWS.get(headline, (f"`{headline}`", _num))
        lines += [f"Headline: {label} = {fmt(metrics[headline])} ({entry.direction}).", ""]
    if picture:
        lines += [
            f"![{name}: {entry.picture_caption}]({picture})",
            "",
        ]
    if base_model:
        lines += [f"Fine-tuned from `{base_model}`.", ""]

    lines += ["## Use", "", "```python", "import nodezoo", ""]
    lines.append(f'model = nodezoo.from_pretrained("{name}")  # a zoo name, Hub repo id or folder')
    if entry.task == "image-classification":
        shape = f"(B, {config.get('in_channels')}, {config.get('image_size')}, "
        shape += f"{config.get('image_size')})"
        lines.append(f"logits = model(images)  # float images in [0, 1], shape {shape}")
        if label_names:
            lines.append("model.label_names[logits.argmax(-1)[0]]  # the first image's class")
    elif entry.task == "density-estimation":
        lines.append(
            f"log_p = model.log_prob(x)  # x (B, {config.get('dim')}); nats per example, (B,)"
        )
        lines.append(f"samples = model.sample(1000)  # (1000, {config.get('dim')})")
    elif entry.task == "time-series-forecasting":
        lines.append(
            "mean, _ = model.predict(obs_t, obs_x, query_t, 0, obs_mask)  "
            "# obs_x (B, T, D), obs_t/obs_mask (B, T); mean (B, Tq, D)"
        )
    lines.append("```")
    if label_names:
        classes = ", ".join(f"`{n}`" for n in label_names)
        lines += ["", f"Classes, in output order (`label_names` in config.json): {classes}."]
    lines += ["", "## Architecture and solver", "", "| Init arg | Value |", "| --- | --- |"]
    for key, value in config.items():
        lines.append(f"| `{key}` | `{json.dumps(value)}` |")

    lines += ["", "## Results", ""]
    lines += _results_table(
        metrics, max_epochs, metrics.get("run/max_steps", facts.get("max_steps"))
    )
    lines.append("")
    if metrics.get(COMPARISON_KEY):
        lines += ["## Compared with baselines", "", str(metrics[COMPARISON_KEY]).strip(), ""]

    lines += ["## Training recipe", ""]
    command = metrics.get("run/command") or (
        "nodezoo fit --config recipe.yaml" if recipe_text else None
    )
    if metrics.get("run/notes"):
        lines += [str(metrics["run/notes"]), ""]
    if command:
        lines += ["Reproduce with:", "", "```bash", command, "```", ""]
    if recipe_text:
        lines += ["`recipe.yaml`:", "", "```yaml", recipe_text.rstrip(), "```", ""]
    else:
        lines += ["No recipe was recorded with these weights.", ""]

    lines += [
        "## Intended use",
        "",
        INTENDED_USE.get(entry.task, INTENDED_USE["image-classification"]).format(
            dataset=dataset[0]
        ),
        "",
        "## Limitations",
        "",
        f"- Trained and evaluated on {dataset[0]} only; inputs must be prepared the same way "
        "(see Use). Other domains are out of scope.",
        "- ODE blocks use an adaptive solver: the cost per input (NFE) varies with the input, "
        "and changing the solver tolerances at inference changes the outputs slightly.",
        *TASK_LIMITATIONS.get(entry.task, []),
        "- Memory figures on CPU are whole-process high-water marks; the saved-for-backward "
        "figure is the one to compare between models.",
        "",
        "## Citation",
        "",
        "```bibtex",
        CITATION,
        "```",
        "",
    ]
    return "\n".join(lines)
