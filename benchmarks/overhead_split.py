"""Where nodezoo's forward overhead over bare f goes, on solvers.py's MLP cases (dopri5, no grad).

    nice -n 10 python benchmarks/overhead_split.py            # 4 cases, ~1-2 min
    python benchmarks/overhead_split.py --repeats 15 --dims 64 --tols 1e-6

solvers.py's "overhead" divides a solve's time by NFE x the time of f called alone in a tight
loop. This script splits that ratio, from four contenders timed round-robin on the CPU clock:

- ``bare f``: f(t0, y0) NFE times in a loop (solvers.py's denominator);
- ``solver only``: the same solve with f replaced by a replay of the derivatives it returned,
  so the step sequence is identical and f costs nothing: the solver's own operations;
- ``solver + f``: the replayed solve that also computes f at every call (and discards it): f
  at the solver's inputs, interleaved with the solver's operations;
- ``solve``: the real solve (should match ``solver + f``).

``f in situ`` = (solver + f - solver only) / NFE is what one evaluation of f costs inside a
solve; above the bare f it shows that f itself runs slower between the solver's operations
(caches and predictors warmed by the tight loop are not warm there). That part is in any
solver's overhead and no change to the step loop removes it.

The four contenders above each loop for ~20 ms, so every solve follows another solve.
solvers.py times one solve per sample, right after ~20 ms of f+vjp loops (its round robin);
``single solve`` does the same (a ``f+vjp`` loop, then one solve), and ``cold start`` is its
overhead minus the looped solve's: what a solve pays for running after other work.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (
    calls_per_sample,
    get_clock,
    markdown_table,
    median,
    per_call,
    time_round_robin,
)
from solvers import mlp_problem, recorded_solve

import nodezoo.solvers as nz


def split(dim: int, tol: float, repeats: int, batch: int) -> list:
    problem = mlp_problem(dim, batch, torch.device("cpu"), seed=0)
    f, y0 = problem.field, problem.y0
    t, t0 = torch.tensor([0.0, 1.0]), torch.zeros(())
    reference, recorded = recorded_solve(nz.odeint, f, y0, t, tol)
    nfe = len(recorded)
    replay = {"it": iter(())}

    def replayed(tt, y):
        return next(replay["it"])

    def replayed_with_f(tt, y):
        f(tt, y)
        return next(replay["it"])

    def solve_with(field):
        def run():
            replay["it"] = iter(recorded)
            with torch.no_grad():
                return nz.odeint(field, y0, t, rtol=tol, atol=tol)

        return run

    def bare():
        with torch.no_grad():
            for _ in range(nfe):
                f(t0, y0)

    def solve():
        with torch.no_grad():
            nz.odeint(f, y0, t, rtol=tol, atol=tol)

    params = [p for p in f.parameters() if p.requires_grad]
    cotangent = torch.randn_like(y0)

    def bare_vjp():
        y = y0.detach().requires_grad_(True)
        torch.autograd.grad(f(t0, y), (y, *params), cotangent)

    if not torch.equal(solve_with(replayed)(), reference):
        raise RuntimeError("the replayed solve took another path; the split would be wrong")
    runners = {
        "bare f": bare,
        "solver only": solve_with(replayed),
        "solver + f": solve_with(replayed_with_f),
        "solve": solve,
        "f+vjp": bare_vjp,
    }
    # each sample loops its runner for ~20 ms of CPU time: one 3 ms solve is too noisy here
    divisors = {name: calls_per_sample(fn, get_clock("cpu"), 0.02) for name, fn in runners.items()}
    runners = {name: per_call(fn, divisors[name]) for name, fn in runners.items()}
    runners["single solve"] = solve  # right after the f+vjp loop, as in solvers.py
    samples = time_round_robin(runners, repeats=repeats, warmup=1, divisors=divisors)["cpu"]
    m = {name: median(v) for name, v in samples.items()}
    f_bare = m["bare f"] / nfe
    f_in_situ = (m["solver + f"] - m["solver only"]) / nfe
    return [
        f"mlp d={dim}",
        f"{tol:g}",
        nfe,
        f"{m['solve'] / m['bare f']:.2f}x",
        f"{f_bare * 1e6:.1f} us",
        f"{f_in_situ * 1e6:.1f} us ({f_in_situ / f_bare:.2f}x)",
        f"{m['solver only'] / m['bare f']:.2f}",
        f"{(f_in_situ - f_bare) * nfe / m['bare f']:.2f}",
        f"{m['single solve'] / m['bare f']:.2f}x",
        f"{(m['single solve'] - m['solve']) / m['bare f']:.2f}",
    ]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dims", type=int, nargs="+", default=[2, 64])
    p.add_argument("--tols", type=float, nargs="+", default=[1e-3, 1e-6])
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = [split(d, tol, args.repeats, args.batch) for d in args.dims for tol in args.tols]
    headers = [
        "problem",
        "tol",
        "NFE",
        "overhead (solve / bare f x NFE)",
        "bare f",
        "f in situ",
        "solver ops / bare f x NFE",
        "f slow-down / bare f x NFE",
        "single solve overhead (as solvers.py)",
        "cold start / bare f x NFE",
    ]
    print(
        f"dopri5 forward, batch {args.batch}, 1 thread, CPU clock, median of {args.repeats} "
        "round-robin samples. overhead - 1 = solver ops + f slow-down (up to timing noise); "
        "single solve overhead - 1 adds the cold start.\n"
    )
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
