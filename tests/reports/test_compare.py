"""``nodezoo compare`` over real short runs: an ODE-Net trained and tested through the ``nodezoo``
CLI (its recipe, so RunSummary comes from the recipe's callback list) and a ResNet and an MLP
fitted and tested in one Lightning process each, all logging to offline W&B in tmp_path."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
from trainers import quiet_trainer

from nodezoo.callbacks import SUMMARY_NAME, ResourceMonitor, RunSummary, SolverStatsMonitor
from nodezoo.cli import main
from nodezoo.data import FashionMNISTDataModule
from nodezoo.models.classifier import ImageClassifier
from nodezoo.reports import read_wandb_run
from nodezoo.reports.commands import main_compare

REPO = Path(__file__).resolve().parents[2]
ODENET_RECIPE = REPO / "recipes" / "fashion_mnist" / "odenet.yaml"
EPOCHS = 2
TRAIN_BATCHES = 2
TOLERANCES = ("1e-1", "1e-4")
# table.csv column -> summary.json key
TABLE_KEYS = {
    "test_acc": "test/acc",
    "params": "model/params",
    "saved_for_backward_mb": "memory/saved_for_backward_mb",
    "peak_memory_mb": "memory/peak_rss_mb",
    "time_per_epoch_s": "time/epoch_s",
    "nfe_forward": "nfe/forward",
    "nfe_backward": "nfe/backward",
    "test_nfe_forward": "test/nfe_forward",
    "epochs": "run/epochs",
}


def _finish_wandb() -> None:
    import wandb

    wandb.finish()


def _cli_odenet(run_dir: Path, data_dir: Path) -> None:
    common = [
        f"--config={ODENET_RECIPE}",
        f"--data.init_args.data_dir={data_dir}",
        "--data.init_args.val_size=16",
        "--data.init_args.batch_size=8",
        "--data.init_args.num_workers=0",
        "--model.init_args.width=8",
        "--trainer.accelerator=cpu",
        f"--trainer.default_root_dir={run_dir}",
        "--trainer.logger.init_args.name=odenet-tiny",
    ]
    shorten = [
        f"--trainer.max_epochs={EPOCHS}",
        f"--trainer.limit_train_batches={TRAIN_BATCHES}",
        "--trainer.limit_val_batches=1",
    ]
    assert main(["fit", *common, *shorten]) == 0
    _finish_wandb()
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    assert main(["test", *common, "--trainer.limit_test_batches=2", f"--ckpt_path={ckpt}"]) == 0
    _finish_wandb()


def _lightning_fit_and_test(run_dir: Path, data_dir: Path, backbone: str) -> None:
    """fit + test in one process: one W&B run holds the test metrics too. RunSummary is listed
    before the monitors on purpose: it must still record their values."""
    from pytorch_lightning.loggers import WandbLogger

    pl.seed_everything(0, verbose=False)
    logger = WandbLogger(name=f"{backbone}-tiny", project="nodezoo", save_dir=str(run_dir))
    trainer = quiet_trainer(
        max_epochs=EPOCHS,
        limit_train_batches=TRAIN_BATCHES,
        limit_val_batches=1,
        limit_test_batches=2,
        logger=logger,
        callbacks=[RunSummary(), SolverStatsMonitor(), ResourceMonitor()],
        default_root_dir=str(run_dir),
    )
    model = ImageClassifier(backbone=backbone, width=8, depth=2, lr_schedule="constant")
    data = FashionMNISTDataModule(data_dir=str(data_dir), batch_size=8, val_size=16, num_workers=0)
    trainer.fit(model, data)
    trainer.test(model, data, verbose=False)
    _finish_wandb()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_fashion_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("compare")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setenv("WANDB_DIR", str(root))
        mp.delenv("WANDB_API_KEY", raising=False)
        runs = {name: root / name for name in ("odenet", "resnet", "mlp")}
        _cli_odenet(runs["odenet"], tiny_fashion_dir)
        _lightning_fit_and_test(runs["resnet"], tiny_fashion_dir, "resnet")
        _lightning_fit_and_test(runs["mlp"], tiny_fashion_dir, "mlp")
    return runs


@pytest.fixture(scope="module")
def compared(runs, tiny_fashion_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("out")
    ckpt = runs["odenet"] / "checkpoints" / "last.ckpt"
    args = [str(ckpt), str(runs["resnet"]), str(runs["mlp"]), "--out", str(out)]
    args += ["--tolerances", *TOLERANCES, "--limit-batches", "2", "--memory-sweep"]
    args += ["--depths", "1", "4", "--wandb-report", "--entity", "me"]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        assert main_compare(args) == 0
    return out


def _summary(run_dir: Path) -> dict:
    return json.loads((run_dir / SUMMARY_NAME).read_text())


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def test_run_summary_records_what_the_run_did(runs):
    odenet = _summary(runs["odenet"])
    assert odenet["run/epochs"] == EPOCHS and odenet["run/max_epochs"] == EPOCHS
    assert odenet["run/global_step"] == EPOCHS * TRAIN_BATCHES
    assert odenet["model/params"] == sum(
        p.numel() for p in ImageClassifier(backbone="odenet", width=8).parameters()
    )
    # test metrics from the separate `nodezoo test` run were merged into the fit's summary
    assert 0 <= odenet["test/acc"] <= 1 and odenet["test/nfe_forward"] >= 6
    assert odenet["run/name"] == "odenet-tiny" and odenet["run/model"] == "odenet"
    assert "CPU" in odenet["run/hardware"] and odenet["time/total_s"] > 0
    history = odenet["history"]
    assert history["epoch"] == list(range(EPOCHS))
    assert all(len(column) == EPOCHS for column in history.values())
    assert history["nfe/forward"][-1] == odenet["nfe/forward"] and odenet["nfe/backward"] > 0
    assert history["time/epoch_s"][-1] == odenet["time/epoch_s"]
    # listed before the monitors, RunSummary still saw their values; no ODE, no NFE
    resnet = _summary(runs["resnet"])
    assert resnet["memory/saved_for_backward_mb"] > 0 and "nfe/forward" not in resnet
    assert resnet["history"]["nfe/forward"] == [None] * EPOCHS


def test_table_holds_the_summaries_numbers(runs, compared):
    rows = {row["name"]: row for row in _read_csv(compared / "table.csv")}
    assert set(rows) == {"odenet-tiny", "resnet-tiny", "mlp-tiny"}
    for name, run_dir in (
        ("odenet-tiny", "odenet"),
        ("resnet-tiny", "resnet"),
        ("mlp-tiny", "mlp"),
    ):
        summary, row = _summary(runs[run_dir]), rows[name]
        for column, key in TABLE_KEYS.items():
            if key in summary:
                assert float(row[column]) == summary[key], (name, column)
            else:
                assert row[column] == "", (name, column)
        assert float(row["test_error_pct"]) == pytest.approx(100 * (1 - summary["test/acc"]))
    markdown = (compared / "table.md").read_text()
    assert "Test error (%)" in markdown and all(name in markdown for name in rows)
    acc = _summary(runs["mlp"])["test/acc"]
    assert f"{100 * (1 - acc):.2f}" in markdown


def _image_is_drawn(path: Path) -> bool:
    """A real PNG with lines on it: not blank, not a stub."""
    from matplotlib.image import imread

    pixels = imread(path)[::2, ::2, :3]
    return path.stat().st_size > 5_000 and pixels.std() > 0.05 and (pixels < 0.5).mean() > 0.005


@pytest.mark.parametrize(
    "png",
    [
        "accuracy_vs_epoch.png",
        "nfe_vs_epoch.png",
        "nfe_backward_vs_forward.png",
        "tolerance_sweep.png",
        "memory_vs_nfe.png",
    ],
)
def test_plots_are_drawn(compared, png):
    assert _image_is_drawn(compared / png)


def test_tolerance_sweep_reevaluates_the_checkpoint(compared):
    rows = _read_csv(compared / "tolerance_sweep.csv")
    assert [(r["name"], float(r["tolerance"])) for r in rows] == [
        ("odenet-tiny", float(t)) for t in TOLERANCES
    ]
    loose, tight = (float(r["test/nfe_forward"]) for r in rows)
    assert tight > loose  # a tighter tolerance takes more steps
    assert all(0 <= float(r["test/acc"]) <= 1 for r in rows)


def test_memory_sweep_shows_constant_adjoint_memory(compared):
    rows = _read_csv(compared / "memory_sweep.csv")

    def saved(model, gradient):
        mine = [r for r in rows if (r["model"], r["gradient"]) == (model, gradient)]
        return [float(r["saved_for_backward_mb"]) for r in mine]

    backprop, adjoint = saved("odenet", "backprop"), saved("odenet", "adjoint")
    assert adjoint[0] == adjoint[-1] and backprop[-1] > backprop[0] > adjoint[0]
    assert saved("odenet", "checkpoint")[-1] < backprop[-1]
    resnet, revnet = saved("resnet", "backprop"), saved("revnet", "reversible")
    assert resnet[-1] > resnet[0] and revnet[-1] == revnet[0]


def _offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_wandb_offline_run_reads_back_the_same_summary(runs):
    (run,) = _offline_runs(runs["resnet"])
    record = read_wandb_run(run)
    summary = _summary(runs["resnet"])
    assert record.name == "resnet-tiny"
    numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float))}
    assert numbers and {k: record.scalars[k] for k in numbers} == numbers
    assert record.get("run/hardware") == summary["run/hardware"]
    assert record.history["epoch"] == summary["history"]["epoch"]
    assert record.history["val/acc"] == summary["history"]["val/acc"]
    assert record.history["train/loss"] == summary["history"]["train/loss"]


def test_compare_reads_wandb_runs_as_inputs(runs, tmp_path):
    fit_run = _offline_runs(runs["odenet"])[0]  # the first is the fit, the second the test
    code = main_compare([str(fit_run), "--out", str(tmp_path), "--no-tolerance-sweep"])
    assert code == 0
    (row,) = _read_csv(tmp_path / "table.csv")
    summary = _summary(runs["odenet"])
    assert row["name"] == "odenet-tiny" and row["source"] == "wandb"
    assert float(row["nfe_forward"]) == summary["nfe/forward"]
    assert _image_is_drawn(tmp_path / "nfe_vs_epoch.png")


def test_report_definition_written_offline(compared):
    definition = json.loads((compared / "wandb_report.json").read_text())
    assert definition["entity"] == "me" and definition["project"] == "nodezoo"
    assert definition["runs"] == ["odenet-tiny", "resnet-tiny", "mlp-tiny"]
    text = json.dumps(definition["report"])
    for needle in ("Run History Line Plot", "Bar Chart", "Run Comparer", "val/acc"):
        assert needle in text
    (grid,) = [b for b in definition["report"]["spec"]["blocks"] if b["type"] == "panel-grid"]
    (runset,) = grid["metadata"]["runSets"]
    (name_filter,) = runset["filters"]["filters"]
    assert name_filter["value"] == definition["runs"]
    assert runset["grouping"] == [{"section": "summary", "name": "run/model"}]


def test_bad_inputs_are_clear_errors(tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    assert "neither a path nor a shipped zoo name" in capsys.readouterr().err
    assert main(["compare", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no summary.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        main_compare([str(tmp_path), "--out", str(tmp_path / "o"), "--limit-batches", "most"])
    assert stop.value.code == 2
    assert "expected a number of batches or 'all', got 'most'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_zoo_folder(runs, tmp_path_factory) -> Path:
    """The tiny ODE-Net run saved as a zoo folder (weights, metrics, recipe)."""
    from nodezoo.zoo import save_folder

    run_dir = runs["odenet"]
    model = ImageClassifier.load_from_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    metrics = {k: v for k, v in _summary(run_dir).items() if k != "history"}
    folder = tmp_path_factory.mktemp("zoo") / "tiny-odenet"
    return save_folder(model, folder, metrics=metrics, recipe=run_dir / "config.yaml")


def test_zoo_folder_is_compared_and_reevaluated(tiny_zoo_folder, tmp_path):
    """A zoo folder (metrics.json + weights + recipe) is a table row, and its ODE model is
    re-evaluated at each tolerance from its own recipe's test data."""
    folder = tiny_zoo_folder
    metrics = json.loads((folder / "metrics.json").read_text())
    out = tmp_path / "out"
    args = [str(folder), "--out", str(out), "--tolerances", "1e-2", "--limit-batches", "1"]
    assert main_compare(args) == 0
    (row,) = _read_csv(out / "table.csv")
    assert row["source"] == "zoo" and float(row["test_acc"]) == metrics["test/acc"]
    (sweep,) = _read_csv(out / "tolerance_sweep.csv")
    assert sweep["name"] == "tiny-odenet" and float(sweep["test/nfe_forward"]) >= 6

    # 'all' sweeps the whole test set: at the recipe's own tolerance it is nodezoo evaluate.
    from nodezoo.zoo import evaluate

    args = [str(folder), "--out", str(out), "--tolerances", "1e-3", "--limit-batches", "all"]
    assert main_compare(args) == 0
    (sweep,) = _read_csv(out / "tolerance_sweep.csv")
    full = evaluate(folder)
    assert float(sweep["test/acc"]) == pytest.approx(full["test/acc"])
    assert float(sweep["test/loss"]) == pytest.approx(full["test/loss"], rel=1e-5)


def test_tolerance_sweep_covers_the_whole_test_set_by_default(tiny_zoo_folder, tmp_path, capsys):
    """32 test images in batches of 4: every one of the 8 batches, and the CSV and log say so."""
    out = tmp_path / "out"
    args = [str(tiny_zoo_folder), "--out", str(out), "--tolerances", "1e-2", "--batch-size", "4"]
    assert main_compare(args) == 0
    (sweep,) = _read_csv(out / "tolerance_sweep.csv")
    assert int(sweep["test/samples"]) == 32 and sweep["test_batches"] == "all"
    assert "tolerance sweep: tiny-odenet at 1 tolerance(s) on the whole test set" in (
        capsys.readouterr().out
    )


def test_limited_tolerance_sweep_is_labelled(compared):
    rows = _read_csv(compared / "tolerance_sweep.csv")
    assert {r["test_batches"] for r in rows} == {"2"}
    assert {int(r["test/samples"]) for r in rows} == {16}  # 2 batches of 8


def _sweep_rows(name: str, test_batches="all") -> list[dict]:
    return [
        {"name": name, "tolerance": tol, "test/acc": 0.9, "test/nfe_forward": nfe,
         "test/samples": 32, "test_batches": test_batches}
        for tol, nfe in ((1e-1, 8.0), (1e-2, 14.0), (1e-3, 26.0))
    ]  # fmt: skip


def test_tolerance_sweep_plot_keeps_coinciding_lines_apart_and_names_its_data():
    from nodezoo.reports.plots import tolerance_sweep_figure

    fig = tolerance_sweep_figure(_sweep_rows("a") + _sweep_rows("b"))  # identical numbers
    assert fig.texts[0].get_text() == "Test-time tolerance sweep on the whole test set"
    for ax in fig.axes:
        first, second = ax.get_lines()
        assert first.get_marker() != second.get_marker()
        assert first.get_linestyle() != second.get_linestyle()
        ratios = [x2 / x1 for x1, x2 in zip(first.get_xdata(), second.get_xdata(), strict=True)]
        assert all(1.01 < r < 1.1 for r in ratios)  # apart, yet a few % of a decade
        legend = ax.get_legend()
        assert "offset" in legend.get_title().get_text()
        assert [t.get_text() for t in legend.get_texts()] == ["a (32 images)", "b (32 images)"]
    partial = tolerance_sweep_figure(_sweep_rows("a", test_batches=2))
    assert "first 2 test batches only" in partial.texts[0].get_text()
    (line,) = partial.axes[0].get_lines()  # a single series is drawn where it is
    assert list(line.get_xdata()) == [1e-3, 1e-2, 1e-1]


def test_tolerance_sweep_plot_of_density_models_shows_nll():
    """Rows without accuracy (CNFs) draw test NLL in the right panel, in points, not images."""
    from nodezoo.reports.plots import tolerance_sweep_figure

    rows = [
        {"name": "cnf", "tolerance": tol, "test/acc": None, "test/nll": nll,
         "test/nfe_forward": 20.0, "test/samples": 300, "test_batches": "all"}
        for tol, nll in ((1e-1, 3.9), (1e-3, 3.7))
    ]  # fmt: skip
    fig = tolerance_sweep_figure(rows)
    quality = fig.axes[1]
    (line,) = quality.get_lines()
    assert list(line.get_ydata()) == [3.7, 3.9]  # sorted by tolerance
    assert quality.get_ylabel() == "test NLL (nats, lower is better)"
    assert quality.get_title() == "NLL vs tolerance (Fig. 3b)"
    assert [t.get_text() for t in quality.get_legend().get_texts()] == ["cnf (300 points)"]
