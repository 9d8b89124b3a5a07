"""The zoo verbs of the ``nodezoo`` command: ``list``, ``evaluate``, ``publish``.

Each ``main_<verb>(argv) -> exit code`` parses its own options, so ``nodezoo.cli`` only maps the
verb to the function. User errors are raised as ``NodezooError``s; ``nodezoo.cli.main`` turns
them into one ``nodezoo <verb>: error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

from .cards import COMPARISON_KEY
from .catalog import list_models
from .errors import ZooError
from .folder import read_metrics
from .pretrained import resolve_ref

# evaluation, publish and hub are imported inside the verbs that use them: they pull in the data
# modules (and so Lightning), which ``nodezoo list`` and ``--help`` do not need.

__all__ = ["compare_with_card", "main_evaluate", "main_list", "main_publish"]

# A recomputed metric matches the card's when within this relative difference (the same test set
# and weights; only float summation order differs between machines).
MATCH_RTOL = 1e-5


def _format_value(key: str, value) -> str:
    if value is None:
        return "-"
    if key.endswith("/acc"):
        return f"{100 * value:.2f}%"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def main_list(argv: Sequence[str]) -> int:
    """``nodezoo list [--json]``: the shipped zoo with headline metrics."""
    parser = argparse.ArgumentParser(
        prog="nodezoo list", description="List the zoo's pretrained models and their metrics."
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(list(argv))
    rows = list_models()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print("The zoo is empty (no folders in nodezoo.model_cards).")
        return 0
    header = ("name", "architecture", "metric", "value", "params", "epochs")
    table = [header] + [
        (
            r["name"],
            r["architecture"],
            f"{r['metric']} ({r['better']} is better)",
            _format_value(r["metric"], r["value"]),
            _format_value("params", r["params"]),
            _format_value("epochs", r["epochs"]),
        )
        for r in rows
    ]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0


def main_evaluate(argv: Sequence[str]) -> int:
    """``nodezoo evaluate REF``: recompute a model's test metrics from its weights."""
    parser = argparse.ArgumentParser(
        prog="nodezoo evaluate",
        description="Recompute a zoo model's published test metrics from its weights.",
    )
    parser.add_argument("ref", help="zoo name, local folder, or Hub repo id (org/name)")
    parser.add_argument("--revision", help="Hub branch, tag or commit")
    parser.add_argument("--seed", type=int, help="seed for generated test data")
    parser.add_argument("--data-dir", help="override the recipe's data_dir")
    parser.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    parser.add_argument("--limit-batches", type=int, help="evaluate only this many batches")
    parser.add_argument(
        "--solver",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="solve every ODE block with this solver setting instead of the recipe's, e.g. "
        "rtol=1e-5 or method=tsit5 (repeatable): accuracy against test NFE, as the paper's "
        "Figure 3",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the recomputed metrics as JSON instead of the table comparing them with the "
        "card",
    )
    args = parser.parse_args(list(argv))
    solver = _key_values(parser, "--solver", "rtol=1e-5", args.solver)
    from .evaluation import evaluate

    metrics = evaluate(
        args.ref,
        revision=args.revision,
        seed=args.seed,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        limit_batches=args.limit_batches,
        solver=solver or None,
    )
    card = read_metrics(resolve_ref(args.ref, args.revision))
    if args.json:
        print(json.dumps(metrics, indent=2, sort_keys=True))
        return 0
    departures = []
    if solver:
        changed = " ".join(f"{k}={v}" for k, v in solver.items())
        departures.append(f"--solver {changed}: the card's metrics are for the recipe's solver")
    if args.limit_batches is not None:
        departures.append("--limit-batches: a subset of the test set")
    rows, verdict = compare_with_card(metrics, card, departure="; ".join(departures) or None)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    print(verdict)
    return 0


def compare_with_card(
    metrics: dict, card: dict, *, departure: str | None = None
) -> tuple[list[tuple[str, ...]], str]:
    """Rows (metric, card value, recomputed value, match) and a one-line verdict: do the
    recomputed metrics reproduce the card's (within ``MATCH_RTOL``)? ``departure`` says how the
    evaluation differs from the card's (a subset, another solver): then no verdict is given."""
    rows = [("metric", "card", "recomputed", "match")]
    mismatched = []
    for key, value in sorted(metrics.items()):
        published = card.get(key)
        if isinstance(published, (int, float)) and isinstance(value, (int, float)):
            same = abs(value - published) <= MATCH_RTOL * max(abs(published), 1e-12)
            if not same:
                mismatched.append(key)
            mark = "yes" if same else "NO"
        else:
            mark = "-"
        rows.append((key, _format_value(key, published), _format_value(key, value), mark))
    compared = sum(row[3] != "-" for row in rows[1:])
    if departure:
        verdict = f"{departure}, so differences from the card are expected."
    elif not compared:
        verdict = "The card records none of these metrics: nothing to compare."
    elif mismatched:
        verdict = (
            f"MISMATCH: {', '.join(mismatched)} differ from the card "
            f"(relative tolerance {MATCH_RTOL:g})."
        )
    else:
        verdict = (
            f"All {compared} metrics the card records match (relative tolerance {MATCH_RTOL:g})."
        )
    return rows, verdict


def _key_values(
    parser: argparse.ArgumentParser, flag: str, example: str, items: list[str]
) -> dict[str, object]:
    """``KEY=VALUE`` items as a dict; a VALUE is an int, a float, true/false, or a string."""
    found: dict[str, object] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"{flag} takes KEY=VALUE (e.g. {example}), got {item!r}")
        found[key] = _scalar(value)
    return found


def _scalar(value: str) -> object:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(value.lower(), value)


def main_publish(argv: Sequence[str]) -> int:
    """``nodezoo publish SOURCE (--repo-id ORG/NAME | --out DIR)``."""
    parser = argparse.ArgumentParser(
        prog="nodezoo publish",
        description="Turn a Lightning checkpoint (or a zoo folder) into a zoo folder with its "
        "model card, and upload it to the Hugging Face Hub (or only write it with --out).",
    )
    parser.add_argument("source", help="a Lightning .ckpt, or a zoo folder / name / repo id")
    parser.add_argument("--repo-id", help="Hub repo to upload to (org/name)")
    parser.add_argument("--out", help="only write the folder here; no upload")
    parser.add_argument("--name", help="model name on the card (default: the folder/repo name)")
    parser.add_argument("--private", action="store_true", help="create the repo as private")
    parser.add_argument(
        "--branch",
        "--revision",
        dest="branch",
        help="branch to upload to (created if missing; default main)",
    )
    parser.add_argument(
        "--create-pr", action="store_true", help="open a pull request instead of committing"
    )
    parser.add_argument("--recipe", help="recipe YAML (default: the run dir's config.yaml)")
    parser.add_argument("--metrics", help="metrics JSON file (default: the run dir's summary.json)")
    parser.add_argument(
        "--fact",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a training fact for the card the run did not record, e.g. "
        "run/hardware='2 CPU cores' or run/max_epochs=30 (repeatable)",
    )
    parser.add_argument(
        "--comparison",
        metavar="FILE",
        help="a Markdown comparison with baselines for the card (nodezoo compare's table.md, "
        "with a line saying how it was made)",
    )
    parser.add_argument("--data-dir", help="data_dir for measuring missing test metrics")
    parser.add_argument("--limit-batches", type=int, help="limit that measurement's batches")
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of generated test data for that measurement (spirals: the test seed; the "
        "recipe's own seed is the training data's)",
    )
    args = parser.parse_args(list(argv))
    from .hub import upload_folder, upload_token
    from .publish import build_folder

    if not args.repo_id and not args.out:
        parser.error("give --repo-id ORG/NAME to upload, or --out DIR to only build the folder")
    facts = _key_values(parser, "--fact", "run/max_epochs=30", args.fact)
    if args.comparison:
        try:
            facts[COMPARISON_KEY] = Path(args.comparison).read_text()
        except OSError as err:
            raise ZooError(
                f"--comparison {args.comparison}: cannot read it ({err.strerror or err}); give "
                "the Markdown file nodezoo compare wrote (table.md)."
            ) from err
    if args.repo_id:
        upload_token()  # fail on a missing token or offline mode before any work

    def build(out: Path) -> Path:
        name = args.name or (args.repo_id.split("/")[-1] if args.repo_id else out.name)
        return build_folder(
            args.source,
            out,
            recipe=args.recipe,
            metrics=args.metrics,
            name=name,
            data_dir=args.data_dir,
            limit_batches=args.limit_batches,
            facts=facts,
            seed=args.seed,
            repo_id=args.repo_id,
        )

    def upload(folder: Path) -> str:
        return upload_folder(
            folder,
            args.repo_id,
            private=args.private,
            branch=args.branch,
            create_pr=args.create_pr,
        )

    if args.out:
        folder = build(Path(args.out))
        print(f"wrote {folder}")
        if not args.repo_id:
            return 0
        url = upload(folder)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            url = upload(build(Path(tmp) / args.repo_id.split("/")[-1]))
    print(f"published {args.repo_id}: {url}")
    return 0
