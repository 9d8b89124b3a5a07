"""Before/after of a solver change: another checkout's ``nodezoo.solvers`` against this one's, in
one process, on solvers.py's MLP cases (dopri5, batch 256).

    nice -n 5 python benchmarks/solver_ab.py /work/main                        # forward solves
    python benchmarks/solver_ab.py /work/main --mode solver-only --pairs 2000  # f replayed
    python benchmarks/solver_ab.py /work/main --mode backprop adjoint --pairs 30

Separate benchmark runs on a shared machine differ by more than most solver changes (a single
few-ms solve moves by about 10% between runs), so this alternates single calls of the two
versions (A B, B A, ...), each timed on the CPU clock, and reports trimmed means and the
median of the per-pair ratios. It also checks that both versions give the same results: equal
NFE, and outputs (and gradients) equal to the bit or their largest difference.

Modes: ``forward`` (no grad), ``solver-only`` (no grad, f replaced by a replay of its outputs:
the solver's own operations, as in overhead_split.py), ``backprop``, ``adjoint`` (solve and
backward of the final state's sum).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import markdown_table
from solvers import Counted, mlp_problem, recorded_solve

import nodezoo.solvers as this

MODES = ("forward", "solver-only", "backprop", "adjoint")


def load_solvers(checkout: Path):
    """``checkout``'s ``nodezoo/solvers`` package, imported as ``baseline_solvers`` (its
    modules import each other relatively, so nothing clashes with ours)."""
    init = checkout / "nodezoo" / "solvers" / "__init__.py"
    if not init.is_file():
        raise SystemExit(f"{init} not found: give the root of a nodezoo checkout.")
    spec = importlib.util.spec_from_file_location(
        "baseline_solvers", init, submodule_search_locations=[str(init.parent)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def trimmed_mean(values: list[float]) -> float:
    """Mean of the middle 60%: load spikes on a shared machine only ever add time."""
    values = sorted(values)
    k = len(values) // 5
    return statistics.mean(values[k : len(values) - k])


def case_runner(solvers, mode: str, field, y0: torch.Tensor, tol: float, replay: list):
    """A closure solving over [0, 1] with ``solvers`` that returns what must agree between
    versions: the final state, and in gradient modes the gradients of its sum."""
    t = torch.tensor([0.0, 1.0])
    y = y0.detach().clone().requires_grad_(mode in ("backprop", "adjoint"))
    params = list(field.parameters())
    if mode in ("forward", "solver-only"):
        if mode == "solver-only":
            state = {}

            def replayed(tt, yy):
                return next(state["outputs"])

        def run():
            if mode == "solver-only":
                state["outputs"] = iter(replay)
            with torch.no_grad():
                return solvers.odeint(replayed if mode == "solver-only" else field, y, t,
                                      rtol=tol, atol=tol)[-1]  # fmt: skip

        return run

    odeint = solvers.odeint if mode == "backprop" else solvers.odeint_adjoint

    def run():
        for leaf in (y, *params):
            leaf.grad = None
        odeint(field, y, t, rtol=tol, atol=tol)[-1].sum().backward()
        return torch.cat([y.grad.reshape(-1), *(p.grad.reshape(-1) for p in params)])

    return run


def compare(baseline, mode: str, dim: int, tol: float, pairs: int) -> list:
    problem = mlp_problem(dim, 256, torch.device("cpu"), seed=0)
    f, y0 = problem.field, problem.y0
    _, replay = recorded_solve(this.odeint, f, y0, torch.tensor([0.0, 1.0]), tol)
    nfe = []
    for solvers in (baseline, this):
        counter = Counted(f)
        case_runner(solvers, mode, counter, y0, tol, replay)()
        nfe.append(counter.calls)
    runs = {name: case_runner(s, mode, f, y0, tol, replay) for name, s in
            (("before", baseline), ("after", this))}  # fmt: skip
    before, after = runs["before"](), runs["after"]()
    same = torch.equal(before, after)
    agreement = "bit-identical" if same else f"max diff {(before - after).abs().max():.1e}"
    for _ in range(3):  # warm-up
        runs["before"](), runs["after"]()
    samples = {"before": [], "after": []}
    for i in range(pairs):
        for name in ("before", "after") if i % 2 else ("after", "before"):
            start = time.process_time()
            runs[name]()
            samples[name].append(time.process_time() - start)
    ratio = statistics.median(b / a for b, a in zip(samples["before"], samples["after"]))
    before_s, after_s = trimmed_mean(samples["before"]), trimmed_mean(samples["after"])
    return [
        f"mlp d={dim}",
        f"{tol:g}",
        mode,
        f"{nfe[0]} / {nfe[1]}" if mode != "solver-only" else f"{len(replay)} replayed",
        agreement,
        f"{before_s * 1e3:.3f} ms",
        f"{after_s * 1e3:.3f} ms",
        f"{ratio:.3f}",
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("baseline", type=Path, help="root of the nodezoo checkout to compare with")
    p.add_argument("--mode", nargs="+", choices=MODES, default=["forward"])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 64])
    p.add_argument("--tols", type=float, nargs="+", default=[1e-3, 1e-6])
    p.add_argument("--pairs", type=int, default=600, help="alternated calls of each version")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    baseline = load_solvers(args.baseline)
    rows = [
        compare(baseline, mode, dim, tol, args.pairs)
        for mode in args.mode
        for dim in args.dims
        for tol in args.tols
    ]
    headers = ["problem", "tol", "mode", "NFE before / after", "results", "before", "after",
               "before / after (median of pairs)"]  # fmt: skip
    print(
        f"{args.baseline} (before) vs {Path(this.__file__).parents[2]} (after): dopri5, batch "
        f"256, 1 thread, CPU clock, {args.pairs} alternated calls each; times are trimmed "
        "means, above 1 in the last column = after is faster.\n"
    )
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
