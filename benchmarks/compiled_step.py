"""Would a compiled step cut the solver's forward overhead? One dopri5 step, eager and compiled.

    python benchmarks/compiled_step.py                 # d = 2 and 64, ~2 min (two compiles)
    python benchmarks/compiled_step.py --dims 64 --repeats 9

Issue 14 asks for a forward overhead (solve time / NFE x bare f) of at most 1.25x on
solvers.py's MLP cases; ``overhead_split.py`` shows the solver's own operations alone use most
of that budget, one 1-3 us tensor operation at a time, and concludes that only fused kernels
could remove them. ``torch.compile`` is the fused-kernel route PyTorch offers without a C++
extension of ours: traced whole, a step (six evaluations of the field and the stage sums, the
solution and the error ratio between them) becomes one graph whose elementwise work Inductor
fuses. This script times that, on the same field and batch as solvers.py (MLP hidden 64, tanh,
batch 256, one thread, no grad), round-robin on the CPU clock:

- ``6 x bare f``: the six evaluations of a step, alone (the overhead's denominator);
- ``eager step``: a plain dopri5 step written with torch operations, error ratio included;
- ``compiled step``: the same function through ``torch.compile`` (Inductor, static shapes);
- ``nodezoo step``: nodezoo's own no-grad step and error ratio, as its adaptive loop calls them
  (``RungeKutta.step`` into the reused stage buffer, then ``_ErrorRatio``).

The three steps return the same values (to float32 rounding; the largest difference is
printed). Fusion pays only if the compiled step is clearly cheaper than nodezoo's: otherwise
compiling the solver is not worth its compile time (seconds to a minute per state shape) and
its fragility.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import calls_per_sample, get_clock, markdown_table, median, per_call, time_round_robin
from solvers import mlp_problem

from nodezoo.solvers.rk import FlatField, RungeKutta, _ErrorRatio
from nodezoo.solvers.step_control import rms_norm
from nodezoo.solvers.tableaus import get_tableau


def dopri5_step(field, rtol: float, atol: float):
    """A straightforward dopri5 step (t, h, y, f(t, y)) -> (y1, f(t + h, y1), error ratio)."""
    tableau = get_tableau("dopri5")
    a, c, b_error = tableau.a, tableau.c, tableau.b_error

    def step(t, h, y, f0):
        ks = [f0]
        for i, row in enumerate(a, 1):
            yi = y
            for w, k in zip(row, ks):
                if w:
                    yi = yi + (h * w) * k
            ks.append(field(t + c[i] * h, yi))
        y1 = yi  # FSAL: the last stage's input is the solution
        err = sum((h * w) * k for w, k in zip(b_error, ks) if w)
        scale = atol + rtol * torch.maximum(y.abs(), y1.abs())
        return y1, ks[-1], (err / scale).pow(2).mean().sqrt()

    return step


def nodezoo_step(field, y0: torch.Tensor, tol: float):
    """nodezoo's no-grad dopri5 step and error ratio on the flat state, as in its solve."""
    flat = FlatField(field, [y0.shape], time_dtype=y0.dtype, device=y0.device, is_tuple=False)
    y = y0.reshape(-1)
    f0 = flat(0.0, y)  # checks f's output once, as a solve's first call does
    rk = RungeKutta.get(get_tableau("dopri5"), y.dtype, y.device)
    scratch = rk.buffer(y.shape[0], flat.row_shape).error_scratch
    error_ratio = _ErrorRatio(rk.b_error, tol, tol, rms_norm, True, y, scratch)
    s = rk.tableau.stages

    def step(t: float, h: float):
        y1, _ = rk.step(flat, t, h, y, f0, False)
        return y1, error_ratio(rk._current.prefixes[s], y1) * abs(h)

    return step


def measure(dim: int, repeats: int, tol: float) -> list:
    problem = mlp_problem(dim, 256, torch.device("cpu"), seed=0)
    field, y0 = problem.field, problem.y0
    t, h = torch.zeros(()), torch.tensor(0.05)
    with torch.no_grad():
        f0 = field(t, y0)
        eager = dopri5_step(field, tol, tol)
        ours = nodezoo_step(field, y0, tol)
        compiled = torch.compile(eager, dynamic=False)
        start = time.perf_counter()
        compiled(t, h, y0, f0)
        compile_s = time.perf_counter() - start
        y1, _, ratio = eager(t, h, y0, f0)
        y1_ours, ratio_ours = ours(0.0, 0.05)
        y1_compiled, _, ratio_compiled = compiled(t, h, y0, f0)
        same = max(
            (y1_compiled - y1).abs().max().item(),
            (y1_ours.view_as(y1) - y1).abs().max().item(),
            abs(ratio_compiled.item() - ratio.item()) / ratio.item(),
            abs(float(ratio_ours) - ratio.item()) / ratio.item(),
        )
        clock = get_clock("cpu")
        contenders = {
            "6 x bare f": lambda: [field(t, y0) for _ in range(6)],
            "eager step": lambda: eager(t, h, y0, f0),
            "compiled step": lambda: compiled(t, h, y0, f0),
            "nodezoo step": lambda: ours(0.0, 0.05),
        }
        n = {name: calls_per_sample(fn, clock, 0.02) for name, fn in contenders.items()}
        runners = {name: per_call(fn, n[name]) for name, fn in contenders.items()}
        samples = time_round_robin(runners, repeats=repeats, warmup=1, divisors=n)["cpu"]
    us = {name: median(s) * 1e6 for name, s in samples.items()}
    bare = us["6 x bare f"]
    return [
        f"mlp d={dim}",
        f"{bare:.0f} us",
        f"{us['eager step']:.0f} us ({us['eager step'] / bare:.2f}x)",
        f"{us['compiled step']:.0f} us ({us['compiled step'] / bare:.2f}x)",
        f"{us['nodezoo step']:.0f} us ({us['nodezoo step'] / bare:.2f}x)",
        f"{us['nodezoo step'] / us['compiled step']:.2f}",
        f"{compile_s:.0f} s",
        f"{same:.1e}",
    ]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 64])
    parser.add_argument("--repeats", type=int, default=7, help="round-robin samples (median)")
    parser.add_argument("--tol", type=float, default=1e-3, help="rtol = atol of the error ratio")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = [measure(dim, args.repeats, args.tol) for dim in args.dims]
    print(
        f"dopri5 step, batch 256, {args.threads} thread(s), no grad, CPU clock, median of "
        f"{args.repeats}; torch {torch.__version__}\n"
    )
    header = [
        "problem", "6 x bare f", "eager step (/ bare)", "compiled step (/ bare)",
        "nodezoo step (/ bare)", "nodezoo / compiled", "compile time", "largest difference",
    ]  # fmt: skip
    print(markdown_table(header, rows))
    print(
        "\nlargest difference: of the solution (absolute) and the error ratio (relative) between "
        "the eager step and the compiled one and nodezoo's"
    )


if __name__ == "__main__":
    main()
