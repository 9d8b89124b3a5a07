"""The examples run end to end, learn something, and write legible figures where git ignores
them."""

import importlib.util
import subprocess
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "fit_spiral.py"


def test_fit_spiral_runs_and_writes_a_plot(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("fit_spiral", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "fit.png"
    before, after = module.main(["--iters", "50", "--out", str(out)])
    assert out.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert "NFE fwd" in printed and "bwd" in printed
    assert after < 0.8 * before


def _load(name: str):
    path = EXAMPLE.parent / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_figure_legend_names_the_top_class_and_rows_are_labelled():
    import matplotlib

    matplotlib.use("Agg")
    demo = _load("pretrained_odenet")
    names = demo.FASHION_CLASSES
    t = torch.linspace(0, 1, 5)
    logits = torch.zeros(5, 3, 10)
    logits[:, 0, 7] = torch.linspace(0, 5, 5)  # right: Sneaker, true Sneaker
    logits[:, 1, 2] = torch.linspace(0, 5, 5)  # wrong: Pullover, true Coat
    logits[:, 2, 9] = torch.linspace(0, 5, 5)  # right: Ankle boot
    y = torch.tensor([7, 4, 9])
    fig = demo.demo_figure(torch.rand(3, 1, 28, 28), y, t, logits.softmax(-1), names, title="m")
    axes = fig.axes
    assert len(axes) == 6
    images, curves = axes[:3], axes[3:]
    expected = [
        ["Sneaker (top, true)"],
        ["Pullover (top)", "Coat (true)"],
        ["Ankle boot (top, true)"],
    ]
    for ax, labels in zip(curves, expected, strict=True):
        legend = ax.get_legend()
        assert legend is not None, "every probability panel names its classes"
        assert [text.get_text() for text in legend.get_texts()] == labels
        assert min(text.get_fontsize() for text in legend.get_texts()) >= 8
        assert ax.get_xlabel() == "ODE time t"
    assert images[0].get_ylabel() and curves[0].get_ylabel() == "class probability"
    assert "predicted Pullover" in images[1].get_title() and "true Coat" in images[1].get_title()


def test_pretrained_demo_writes_its_figure_where_git_ignores_it(
    tmp_path, monkeypatch, capsys, tiny_fashion_dir
):
    demo = _load("pretrained_odenet")
    monkeypatch.chdir(tmp_path)
    argv = ["--data-dir", str(tiny_fashion_dir), "--limit-batches", "1", "--batch-size", "8"]
    demo.main(argv)
    figure = tmp_path / "outputs" / "odenet_demo.png"
    assert figure.stat().st_size > 1000
    assert str(figure) in capsys.readouterr().out  # it says where
    repo = EXAMPLE.parents[1]
    ignored = subprocess.run(
        ["git", "check-ignore", "outputs/odenet_demo.png", "outputs/spiral_fit.png"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert len(ignored.stdout.split()) == 2, "outputs/ must be in .gitignore"
    for name in ("pretrained_odenet", "fit_spiral"):
        assert '"outputs/' in (EXAMPLE.parent / f"{name}.py").read_text()


def test_stiff_robertson_learns_rates_where_dopri5_gives_up(capsys):
    module = _load("stiff_robertson")
    before, after = module.main(
        ["--iters", "3", "--t-end", "10", "--points", "6", "--lr", "0.3",
         "--explicit-max-steps", "300"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "dopri5: Reached max_steps=300" in printed
    assert after[0] < 0.5 * before[0] and after[1] < 0.5 * before[1]  # k1, k2 move toward truth


def test_density_cnf_learns_and_draws_where_git_ignores_it(tmp_path, monkeypatch, capsys):
    """40 steps already take the 8-Gaussians test NLL well down (6.06 nats untrained); the
    picture goes to outputs/, which git ignores."""
    module = _load("density_cnf")
    monkeypatch.chdir(tmp_path)
    before, after = module.main(["--steps", "40"])
    assert after < before - 1.0
    picture = tmp_path / "outputs" / "cnf_8gaussians.png"
    assert picture.stat().st_size > 1000
    printed = capsys.readouterr().out
    assert f"wrote {Path('outputs') / 'cnf_8gaussians.png'}" in printed
    assert "NFE fwd" in printed


def test_the_folder_example_writes_the_digits_split_as_image_files(tmp_path):
    """examples/finetune_folder.py's PNG folders hold DigitsDataModule's split, image for image,
    and ImageFolderDataModule reads them back with the digits as labels."""
    pytest.importorskip("sklearn")
    from nodezoo.data import DigitsDataModule, ImageFolderDataModule

    counts = _load("finetune_folder").write_digit_folders(tmp_path)
    assert counts == {"train": 1200, "val": 200, "test": 397}
    folders = ImageFolderDataModule(str(tmp_path), image_size=8, batch_size=500, augment=False)
    folders.setup()
    assert folders.label_names == tuple("0123456789")
    digits = DigitsDataModule(image_size=8)
    digits.setup()
    for split, dataset in (("val", folders.val_set), ("test", folders.test_set)):
        expected_x, expected_y = digits.splits[split].tensors
        x, y = next(iter(torch.utils.data.DataLoader(dataset, batch_size=500)))
        assert len(y) == counts[split]
        for label in range(10):  # files are read class by class, in the split's order
            ours, theirs = x[y == label], expected_x[expected_y == label]
            assert ours.shape == theirs.shape
            assert (ours - theirs).abs().max() <= 0.5 / 255 + 1e-6
