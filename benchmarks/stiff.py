"""Stiff problems: nodezoo's radau5 and kvaerno5 against scipy's Radau and BDF, in one run.

    nice python benchmarks/stiff.py            # all problems, tolerance sweeps, the batch
    python benchmarks/stiff.py --quick         # shorter horizons and a batch of 32
    python benchmarks/stiff.py --parts sweep   # or single / batch: one part only

1. At one tolerance per problem: the error at the end time against scipy Radau at rtol = atol =
   1e-12 (or the exact solution), function evaluations, Jacobian evaluations, LU
   factorisations and wall time. nodezoo's Jacobians are autograd Jacobians (one f evaluation,
   counted in NFE, and one batched vector-Jacobian product each); scipy's are finite
   differences (n evaluations each, included in its NFE). "work" = NFE + Jacobians.
2. Work-precision: the same over rtol = 1e-4 ... 1e-10, so methods can be compared at matched
   tolerance and at matched cost.
3. A batch of van der Pol problems with different mu: nodezoo solving them as one batched
   state (block-diagonal Jacobians, batched LU: options["block_size"] = 2) against a loop of
   scipy calls.
4. Events: the time van der Pol's first component first crosses 0 (mid-jump, where it moves
   fastest), found by nodezoo's event_fn and by scipy's terminal events, against scipy Radau
   at rtol = atol = 1e-12.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.integrate import solve_ivp

from nodezoo.solvers import SolveStats, solve
from nodezoo.solvers.stiff_problems import hires, robertson, van_der_pol

F64 = torch.float64
NODEZOO_METHODS = ("radau5", "kvaerno5")
PARTS = ("single", "sweep", "batch", "events")


def stiff_linear():
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(1)))[0]
    A = Q @ torch.diag(torch.tensor([-1.0, -10.0, -1e4], dtype=F64)) @ Q.t()
    return (lambda t, y: A @ y), A


def numpy_rhs(f):
    return lambda t, y: f(torch.tensor(t, dtype=F64), torch.from_numpy(y)).numpy()


def run_nodezoo(method, f, y0, t_end, rtol, atol, options=None):
    stats = SolveStats()
    start = time.perf_counter()
    with torch.no_grad():
        ys = solve(f, y0, torch.tensor([0.0, t_end], dtype=F64),
                   {"method": method, "rtol": rtol, "atol": atol}, stats=stats,
                   options=options)  # fmt: skip
    elapsed = time.perf_counter() - start
    return ys[-1], stats.nfe, stats.jacobian_evaluations, stats.lu_decompositions, elapsed


def run_scipy(f, y0, t_end, rtol, atol, method):
    start = time.perf_counter()
    sol = solve_ivp(numpy_rhs(f), (0.0, t_end), y0.numpy(), method=method, rtol=rtol, atol=atol)
    elapsed = time.perf_counter() - start
    return torch.from_numpy(sol.y[:, -1]), sol.nfev, sol.njev, sol.nlu, elapsed


def problems(quick: bool):
    """(name, f, y0, t_end, rtol, atol as a function of rtol, exact end state or None)."""
    lin, A = stiff_linear()
    y_lin = torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    return [
        ("stiff linear (exact)", lin, y_lin, 2.0, 1e-8, lambda r: r * 1e-2,
         torch.linalg.matrix_exp(2.0 * A) @ y_lin),
        ("Robertson", robertson, torch.tensor([1.0, 0.0, 0.0], dtype=F64),
         1e3 if quick else 1e11, 1e-6, lambda r: 1e-10, None),
        ("van der Pol mu=1000", van_der_pol(1000.0), torch.tensor([2.0, 0.0], dtype=F64),
         0.2 if quick else 1.0, 1e-6, lambda r: r, None),
        ("HIRES", hires, torch.tensor([1.0, 0, 0, 0, 0, 0, 0, 0.0057], dtype=F64),
         321.8122, 1e-6, lambda r: r, None),
    ]  # fmt: skip


def _row(name, t_end, solver, rtol, result, exact):
    y, nfe, njev, nlu, elapsed = result
    error = float((y - exact).abs().max())
    print(f"| {name} (t_end={t_end:g}) | {solver} | {rtol:g} | {error:.2e} | {nfe} | {njev} | "
          f"{nfe + njev} | {nlu} | {elapsed:.2f} |")  # fmt: skip


def single_problems(cases, references, rtols=None):
    """One tolerance per problem (``rtols`` None), or a work-precision sweep."""
    print("| problem | solver | rtol | error | NFE | Jacobians | work | LU | time (s) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, f, y0, t_end, rtol0, atol_of, _ in cases:
        exact = references[name]
        for rtol in rtols or [rtol0]:
            atol = atol_of(rtol)
            for method in NODEZOO_METHODS:
                result = run_nodezoo(method, f, y0, t_end, rtol, atol)
                _row(name, t_end, f"nodezoo {method}", rtol, result, exact)
            for method in ("Radau",) if rtols else ("Radau", "BDF"):
                result = run_scipy(f, y0, t_end, rtol, atol, method)
                _row(name, t_end, f"scipy {method}", rtol, result, exact)


def batch(n: int, t_end: float, rtol: float):
    mus = torch.logspace(1, 3, n, dtype=F64)  # mu from 10 to 1000
    y0 = torch.tensor([2.0, 0.0], dtype=F64).repeat(n, 1)
    f = van_der_pol(mus)
    t = torch.tensor([0.0, t_end], dtype=F64)
    rows, ends = [], {}
    for method, options in [("radau5", {"block_size": 2}), ("kvaerno5", {"block_size": 2}),
                            ("kvaerno5", None)]:  # fmt: skip
        stats = SolveStats()
        start = time.perf_counter()
        with torch.no_grad():
            ys = solve(f, y0, t, {"method": method, "rtol": rtol, "atol": rtol}, stats=stats,
                       options=options)  # fmt: skip
        label = f"nodezoo {method}, one batched solve" + (
            ", block-diagonal Jacobian" if options else ", dense Jacobian"
        )
        rows.append((label, time.perf_counter() - start, stats))
        ends[label] = ys[-1].numpy()
    start = time.perf_counter()
    scipy_ends = []
    for i in range(n):
        sol = solve_ivp(numpy_rhs(van_der_pol(float(mus[i]))), (0.0, t_end), y0[i].numpy(),
                        method="Radau", rtol=rtol, atol=rtol)  # fmt: skip
        scipy_ends.append(sol.y[:, -1])
    t_scipy = time.perf_counter() - start
    scipy_ends = np.stack(scipy_ends)
    print(
        f"\nBatch of {n} van der Pol problems, mu in [10, 1000], t_end={t_end:g}, "
        f"rtol=atol={rtol:g}"
    )
    print("| solver | time (s) | speed-up vs scipy loop | NFE | Jacobians | LU | "
          "largest end-state difference to scipy |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for label, elapsed, stats in rows:
        difference = float(np.abs(ends[label] - scipy_ends).max())
        counts = f"{stats.nfe} | {stats.jacobian_evaluations} | {stats.lu_decompositions}"
        print(
            f"| {label} | {elapsed:.2f} | {t_scipy / elapsed:.1f}x | {counts} | {difference:.1e} |"
        )
    print(f"| scipy Radau, loop of {n} calls | {t_scipy:.2f} | 1.0x | | | | |")


def events(mu: float, rtols) -> None:
    """Part 4: first zero of y1 for van der Pol (it starts at 2)."""
    f = van_der_pol(mu)
    y0 = torch.tensor([2.0, 0.0], dtype=F64)

    def crossing(t, y):
        return y[0]

    crossing.terminal, crossing.direction = True, -1

    def scipy_event(rtol, method):
        start = time.perf_counter()
        sol = solve_ivp(numpy_rhs(f), (0.0, 10.0), y0.numpy(), method=method, rtol=rtol,
                        atol=rtol, events=crossing)  # fmt: skip
        return float(sol.t_events[0][0]), sol.nfev, sol.njev, time.perf_counter() - start

    reference = scipy_event(1e-12, "Radau")[0]
    print(f"\nEvent: first zero of y1, van der Pol mu={mu:g} from (2, 0); reference time "
          f"{reference:.12f} (scipy Radau, rtol = atol = 1e-12)")  # fmt: skip
    print("| solver | rtol | event time error | NFE | Jacobians | time (s) |")
    print("|---|---|---|---|---|---|")
    for rtol in rtols:
        for method in NODEZOO_METHODS:
            stats = SolveStats()
            start = time.perf_counter()
            with torch.no_grad():
                t_event, _ = solve(f, y0, torch.tensor([0.0, 10.0], dtype=F64),
                                   {"method": method, "rtol": rtol, "atol": rtol}, stats=stats,
                                   event_fn=lambda t, y: y[0])  # fmt: skip
            elapsed = time.perf_counter() - start
            print(f"| nodezoo {method} | {rtol:g} | {abs(float(t_event) - reference):.2e} | "
                  f"{stats.nfe} | {stats.jacobian_evaluations} | {elapsed:.2f} |")  # fmt: skip
        for method in ("Radau", "BDF"):
            t_event, nfe, njev, elapsed = scipy_event(rtol, method)
            print(f"| scipy {method} | {rtol:g} | {abs(t_event - reference):.2e} | {nfe} | "
                  f"{njev} | {elapsed:.2f} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 256; 32 quick)")
    p.add_argument("--parts", nargs="+", choices=PARTS, default=PARTS,
                   help="single: one tolerance each; sweep: work-precision; batch; "
                   "events: event times")  # fmt: skip
    args = p.parse_args()
    torch.set_num_threads(1)
    cases = problems(args.quick)
    references = {
        name: exact if exact is not None else run_scipy(f, y0, t_end, 1e-12, 1e-12, "Radau")[0]
        for name, f, y0, t_end, _, _, exact in cases
        if {"single", "sweep"} & set(args.parts)
    }
    if "single" in args.parts:
        single_problems(cases, references)
    if "sweep" in args.parts:
        print("\nWork-precision: atol as above (linear: rtol/100; Robertson: 1e-10; others: rtol)")
        single_problems(cases, references, rtols=[1e-4, 1e-6, 1e-8, 1e-10])
    if "batch" in args.parts:
        batch(args.batch or (32 if args.quick else 256), 0.2 if args.quick else 1.0, 1e-6)
    if "events" in args.parts:
        events(100.0 if args.quick else 1000.0, [1e-4, 1e-6, 1e-8])


if __name__ == "__main__":
    main()
