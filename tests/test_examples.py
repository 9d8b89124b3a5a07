"""The main-job example runs end to end (a few iterations) and learns something."""

import importlib.util
from pathlib import Path

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


STIFF_EXAMPLE = EXAMPLE.parent / "stiff_robertson.py"


def test_stiff_robertson_learns_rates_where_dopri5_gives_up(capsys):
    spec = importlib.util.spec_from_file_location("stiff_robertson", STIFF_EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    before, after = module.main(
        ["--iters", "3", "--t-end", "10", "--points", "6", "--lr", "0.3",
         "--explicit-max-steps", "300"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "dopri5: Reached max_steps=300" in printed
    assert after[0] < 0.5 * before[0] and after[1] < 0.5 * before[1]  # k1, k2 move toward truth
