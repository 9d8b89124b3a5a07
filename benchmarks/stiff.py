"""Stiff problems: nodezoo's kvaerno5 against scipy's Radau and BDF, in one run.

    nice python benchmarks/stiff.py            # all problems and the batch (a few minutes)
    python benchmarks/stiff.py --quick         # shorter horizons and a batch of 32

For each problem: the error at the end time against scipy Radau at rtol = atol = 1e-12 (or the
exact solution), function evaluations, Jacobian evaluations, LU factorisations and wall time,
all at the same rtol/atol. nodezoo's Jacobians count autograd Jacobians (one f evaluation and
one batched vector-Jacobian product each); scipy's count finite-difference Jacobians (n
evaluations each, included in its NFE). Then a batch of van der Pol problems with different mu:
nodezoo solving them as one batched state against a loop of scipy calls.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from scipy.integrate import solve_ivp

from nodezoo.solvers import SolveStats, solve

F64 = torch.float64


def robertson(t, y):
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack(
        [-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2**2, 3e7 * y2**2], -1
    )


def van_der_pol(mu):
    def f(t, y):
        return torch.stack([y[..., 1], mu * ((1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0])], -1)

    return f


def stiff_linear():
    Q = torch.linalg.qr(torch.randn(3, 3, dtype=F64, generator=torch.Generator().manual_seed(1)))[0]
    A = Q @ torch.diag(torch.tensor([-1.0, -10.0, -1e4], dtype=F64)) @ Q.t()
    return (lambda t, y: A @ y), A


def numpy_rhs(f):
    return lambda t, y: f(torch.tensor(t, dtype=F64), torch.from_numpy(y)).numpy()


def run_nodezoo(f, y0, t_end, rtol, atol):
    stats = SolveStats()
    start = time.perf_counter()
    with torch.no_grad():
        ys = solve(f, y0, torch.tensor([0.0, t_end], dtype=F64),
                   {"method": "kvaerno5", "rtol": rtol, "atol": atol}, stats=stats)  # fmt: skip
    return (
        ys[-1],
        stats.nfe,
        stats.jacobian_evaluations,
        stats.lu_decompositions,
        (time.perf_counter() - start),
    )


def run_scipy(f, y0, t_end, rtol, atol, method):
    start = time.perf_counter()
    sol = solve_ivp(numpy_rhs(f), (0.0, t_end), y0.numpy(), method=method, rtol=rtol, atol=atol)
    elapsed = time.perf_counter() - start
    return torch.from_numpy(sol.y[:, -1]), sol.nfev, sol.njev, sol.nlu, elapsed


def single_problems(quick: bool):
    lin, A = stiff_linear()
    y_lin = torch.tensor([1.0, 2.0, -1.0], dtype=F64)
    problems = [
        ("stiff linear (exact)", lin, y_lin, 2.0, 1e-8, 1e-10,
         torch.linalg.matrix_exp(2.0 * A) @ y_lin),
        ("Robertson", robertson, torch.tensor([1.0, 0.0, 0.0], dtype=F64),
         1e3 if quick else 1e5, 1e-6, 1e-10, None),
        ("van der Pol mu=1000", van_der_pol(1000.0), torch.tensor([2.0, 0.0], dtype=F64),
         0.2 if quick else 1.0, 1e-6, 1e-6, None),
    ]  # fmt: skip
    print("| problem | solver | rtol | error | NFE | Jacobians | LU | time (s) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, f, y0, t_end, rtol, atol, exact in problems:
        if exact is None:
            exact = run_scipy(f, y0, t_end, 1e-12, 1e-12, "Radau")[0]
        rows = [("nodezoo kvaerno5", run_nodezoo(f, y0, t_end, rtol, atol))]
        for method in ("Radau", "BDF"):
            rows.append((f"scipy {method}", run_scipy(f, y0, t_end, rtol, atol, method)))
        for solver, (y, nfe, njev, nlu, elapsed) in rows:
            error = float((y - exact).abs().max())
            print(f"| {name} (t_end={t_end:g}) | {solver} | {rtol:g} | {error:.2e} | {nfe} | "
                  f"{njev} | {nlu} | {elapsed:.2f} |")  # fmt: skip


def batch(n: int, t_end: float, rtol: float):
    mus = torch.logspace(1, 3, n, dtype=F64)  # mu from 10 to 1000
    y0 = torch.tensor([2.0, 0.0], dtype=F64).repeat(n, 1)

    def f(t, y):
        return van_der_pol(mus)(t, y)

    stats = SolveStats()
    start = time.perf_counter()
    with torch.no_grad():
        ys = solve(f, y0, torch.tensor([0.0, t_end], dtype=F64),
                   {"method": "kvaerno5", "rtol": rtol, "atol": rtol}, stats=stats)  # fmt: skip
    t_nodezoo = time.perf_counter() - start
    start = time.perf_counter()
    ends = []
    for i in range(n):
        sol = solve_ivp(numpy_rhs(van_der_pol(float(mus[i]))), (0.0, t_end), y0[i].numpy(),
                        method="Radau", rtol=rtol, atol=rtol)  # fmt: skip
        ends.append(sol.y[:, -1])
    t_scipy = time.perf_counter() - start
    difference = float(np.abs(ys[-1].numpy() - np.stack(ends)).max())
    print(
        f"\nBatch of {n} van der Pol problems, mu in [10, 1000], t_end={t_end:g}, "
        f"rtol=atol={rtol:g}"
    )
    print("| solver | time (s) | NFE | Jacobians | LU |")
    print("|---|---|---|---|---|")
    print(f"| nodezoo kvaerno5, one batched solve | {t_nodezoo:.2f} | {stats.nfe} | "
          f"{stats.jacobian_evaluations} | {stats.lu_decompositions} |")  # fmt: skip
    print(f"| scipy Radau, loop of {n} calls | {t_scipy:.2f} | | | |")
    print(
        f"speed-up {t_scipy / t_nodezoo:.1f}x; largest difference of the end states "
        f"{difference:.1e}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 256; 32 quick)")
    args = p.parse_args()
    torch.set_num_threads(1)
    single_problems(args.quick)
    batch(args.batch or (32 if args.quick else 256), 0.2 if args.quick else 1.0, 1e-6)


if __name__ == "__main__":
    main()
