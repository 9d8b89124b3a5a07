"""Per-sample ("independent") solves: nodezoo's ``solve_independent`` against torchode.

    nice -n 10 python benchmarks/independent.py --clock cpu      # ~3 min, 1 thread
    python benchmarks/independent.py --quick                      # smoke run

1. Accuracy: dy/dt = -rate_b y for rates from 0.1 to 100 over [0, 0.1], rtol 1e-5, float64.
   Each library's largest relative error on the fastest sample, for batches of 16 and 256:
   a per-sample solve's error does not depend on the batch; a joint solve's (one step size
   and one RMS error norm for the batch: nodezoo's ``solve``, torchdiffeq) grows with it.
2. Speed: the MLP fields of ``benchmarks/solvers.py`` (d = 2 and 64, batch 256, float32), each
   sample with its own 10 output times over its own span (0.5 to 1.5), dopri5 at 1e-3 and
   1e-6, forward (no grad) and backprop; nodezoo and torchode per-sample, timed round-robin in
   one process. NFE = calls of f (each on the whole batch); "torchode / nodezoo" is the time
   ratio (above 1: nodezoo faster), also per NFE; "max error": the largest deviation of each
   library's outputs from a float64 solve at rtol = atol = 1e-10 (both solve the same problem
   to the same accuracy).
3. Gradient modes on one of those problems: nodezoo's backprop and checkpoint, torchode's
   backprop and its per-sample adjoint (BacksolveAdjoint): time, NFE, peak memory, and the
   gradients' distance from nodezoo's backprop ones.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (
    format_bytes,
    format_ratio,
    format_seconds,
    get_clock,
    machine_description,
    markdown_table,
    median,
    peak_memory_growth,
    time_round_robin,
)
from solvers import Counted, MLPField

import nodezoo
from nodezoo.solvers import SolverConfig


def torchode_solver(field, tol: float):
    """torchode's per-sample dopri5 (its native mode), no gradient through step control
    (nodezoo has none either); returns ``solve(y0, t_eval) -> (n_t, batch, dim)``."""
    import torchode

    term = torchode.ODETerm(field, with_stats=False)
    method = torchode.Dopri5(term=term)
    controller = torchode.IntegralController(atol=tol, rtol=tol, term=term)
    solver = torchode.AutoDiffAdjoint(method, controller, backprop_through_step_size_control=False)

    def solve(y0, t_eval):
        return solver.solve(torchode.InitialValueProblem(y0, t_eval=t_eval)).ys.transpose(0, 1)

    return solve


def nodezoo_solver(field, tol: float):
    config = SolverConfig(method="dopri5", rtol=tol, atol=tol, gradient="backprop")
    return lambda y0, t_eval: nodezoo.solve_independent(field, y0, t_eval, config)


SOLVERS = {"nodezoo": nodezoo_solver, "torchode": torchode_solver}


# --------------------------------------------------------------------------- accuracy


ACCURACY_SOLVERS = (
    "nodezoo solve_independent (per sample)",
    "torchode (per sample)",
    "nodezoo solve (joint)",
    "torchdiffeq odeint (joint)",
)


def accuracy_rows(batches) -> list[list[object]]:
    rows = []
    for n in batches:
        rates = torch.logspace(-1, 2, n, dtype=torch.float64)
        t = torch.linspace(0, 0.1, 11, dtype=torch.float64)
        y0 = torch.ones(n, 1, dtype=torch.float64)
        exact = torch.exp(-rates[None, :, None] * t[:, None, None])
        field = Counted(_Decay(rates))
        for name in ACCURACY_SOLVERS:
            field.calls = 0
            with torch.no_grad():
                ys = _decay_solve(name, field, y0, t)
            error = ((ys - exact).abs() / exact).amax(dim=(0, 2))
            rows.append(
                [
                    name,
                    n,
                    f"{float(error[-1]):.2e}",
                    f"{float(error.max()) / 1e-5:.1f}",
                    field.calls,
                ]
            )
    return rows


def _decay_solve(name: str, field, y0, t, rtol: float = 1e-5, atol: float = 1e-12):
    if name.startswith("nodezoo"):
        config = SolverConfig(rtol=rtol, atol=atol, gradient="backprop")
        solve = nodezoo.solve_independent if "independent" in name else nodezoo.solve
        return solve(field, y0, t, config)
    if name.startswith("torchdiffeq"):
        import torchdiffeq

        return torchdiffeq.odeint(field, y0, t, rtol=rtol, atol=atol)
    import torchode

    term = torchode.ODETerm(field, with_stats=False)
    method = torchode.Dopri5(term=term)
    controller = torchode.IntegralController(atol=atol, rtol=rtol, term=term)
    solver = torchode.AutoDiffAdjoint(method, controller)
    problem = torchode.InitialValueProblem(y0, t_eval=t.expand(y0.shape[0], -1))
    return solver.solve(problem).ys.transpose(0, 1)


class _Decay(torch.nn.Module):
    def __init__(self, rates):
        super().__init__()
        self.rates = rates

    def forward(self, t, y):
        return -self.rates[:, None] * y


# --------------------------------------------------------------------------- speed


def speed_rows(args) -> list[list[str]]:
    batch = 64 if args.quick else 256
    tols = (1e-3,) if args.quick else (1e-3, 1e-6)
    rows = []
    for dim in (2, 64):
        torch.manual_seed(args.seed)
        field = MLPField(dim)
        y0 = torch.randn(batch, dim)
        spans = 0.5 + torch.rand(batch)
        t_eval = spans[:, None] * torch.linspace(0, 1, 10)[None, :]
        reference = _reference(field, y0, t_eval)
        for tol in tols:
            for mode in ("forward", "backprop"):
                runners, calls, outputs = {}, {}, {}
                for name, make in SOLVERS.items():
                    counted = Counted(field)
                    solve_counted = make(counted, tol)
                    solve_timed = make(field, tol)
                    runners[name] = _runner(solve_timed, y0, t_eval, mode, field)
                    with torch.no_grad():
                        outputs[name] = solve_counted(y0, t_eval)
                    calls[name] = counted.calls
                samples = time_round_robin(runners, repeats=args.repeats, warmup=1)[args.clock]
                mine, theirs = median(samples["nodezoo"]), median(samples["torchode"])
                errors = [float((outputs[name] - reference).abs().max()) for name in SOLVERS]
                rows.append(
                    [
                        f"mlp d={dim}",
                        f"{tol:g}",
                        mode,
                        format_seconds(mine),
                        format_seconds(theirs),
                        f"{calls['nodezoo']} / {calls['torchode']}",
                        format_ratio(theirs / mine),
                        format_ratio((theirs / calls["torchode"]) / (mine / calls["nodezoo"])),
                        " / ".join(f"{e:.1e}" for e in errors),
                    ]
                )
                print(f"  mlp d={dim} tol={tol:g} {mode}: done", file=sys.stderr, flush=True)
    return rows


GRADIENT_MODES = (
    ("nodezoo", "backprop"),
    ("nodezoo", "checkpoint"),
    ("torchode", "backprop"),
    ("torchode", "adjoint"),
)


def gradient_rows(args) -> list[list[str]]:
    """Each gradient mode's time, NFE and peak memory on one problem, and how far its
    gradients are from nodezoo's backprop ones (all differentiate the same solve)."""
    batch, dim, tol = (64, 64, 1e-3) if args.quick else (256, 64, 1e-6)
    torch.manual_seed(args.seed)
    field = MLPField(dim)
    y0 = torch.randn(batch, dim)
    t_eval = (0.5 + torch.rand(batch))[:, None] * torch.linspace(0, 1, 10)[None, :]
    weights = torch.randn(10, batch, dim)
    leaves = [y0.clone().requires_grad_(True), *field.parameters()]
    runners, measured = {}, {}
    for library, mode in GRADIENT_MODES:
        counted = Counted(field)
        solve = _gradient_solver(library, mode, counted, tol)

        def run(solve=solve, counted=counted):
            for leaf in leaves:
                leaf.grad = None
            counted.calls = 0
            out = solve(leaves[0], t_eval)
            forward = counted.calls
            (out * weights).sum().backward()
            return forward, counted.calls - forward

        runners[(library, mode)] = run
        nfe = run()
        grads = [leaf.grad.clone() for leaf in leaves]
        peak = peak_memory_growth(run, torch.device("cpu"))
        measured[(library, mode)] = (nfe, grads, peak)
    samples = time_round_robin(runners, repeats=args.repeats, warmup=1)[args.clock]
    reference = measured[("nodezoo", "backprop")][1]
    rows = []
    for key, (nfe, grads, peak) in measured.items():
        error = max(float((g - r).norm() / r.norm()) for g, r in zip(grads, reference, strict=True))
        rows.append(
            [
                f"{key[0]} {key[1]}",
                format_seconds(median(samples[key])),
                f"{nfe[0]} + {nfe[1]}",
                format_bytes(peak),
                f"{error:.1e}",
            ]
        )
    return rows


def _gradient_solver(library: str, mode: str, field, tol: float):
    if library == "nodezoo":
        config = SolverConfig(method="dopri5", rtol=tol, atol=tol, gradient=mode)
        return lambda y0, t_eval: nodezoo.solve_independent(field, y0, t_eval, config)
    if mode == "backprop":
        return torchode_solver(field, tol)
    import torchode

    term = torchode.ODETerm(field, with_stats=False)
    method = torchode.Dopri5(term=term)
    controller = torchode.IntegralController(atol=tol, rtol=tol, term=term)
    solver = torchode.BacksolveAdjoint(term, method, controller)

    def solve(y0, t_eval):
        return solver.solve(torchode.InitialValueProblem(y0, t_eval=t_eval)).ys.transpose(0, 1)

    return solve


def _reference(field, y0, t_eval) -> torch.Tensor:
    """The same solves in float64 at rtol = atol = 1e-10, as float32."""
    config = SolverConfig(method="dopri5", rtol=1e-10, atol=1e-10, gradient="backprop")
    with torch.no_grad():
        exact = nodezoo.solve_independent(
            copy.deepcopy(field).double(), y0.double(), t_eval.double(), config
        )
    return exact.float()


def _runner(solve, y0, t_eval, mode, field):
    if mode == "forward":

        def run():
            with torch.no_grad():
                solve(y0, t_eval)

        return run
    y_leaf = y0.clone().requires_grad_(True)
    params = list(field.parameters())

    def run():
        y_leaf.grad = None
        for p in params:
            p.grad = None
        solve(y_leaf, t_eval)[-1].sum().backward()

    return run


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes, one tolerance")
    p.add_argument("--repeats", type=int, default=None, help="timed rounds (default 7; quick 3)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"])
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.repeats = args.repeats or (3 if args.quick else 7)
    get_clock(args.clock)
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    import torchode

    print("# Per-sample solves: nodezoo.solve_independent and torchode\n")
    print(
        f"torch {torch.__version__}, torchode {torchode.__version__}; {machine_description()}, "
        f"{args.threads} thread(s), {args.clock} clock, median of {args.repeats} round-robin "
        f"samples{'; QUICK run' if args.quick else ''}.\n"
    )
    print("## 1. Error of the fastest sample (rate 100), and the worst over the batch\n")
    print(
        "dy/dt = -rate_b y, rates log-spaced from 0.1 to 100, over [0, 0.1] (11 outputs), "
        "rtol 1e-5, atol 1e-12, float64; error relative to exp(-rate t).\n"
    )
    header = ["solver", "batch", "fastest sample's error", "worst error / rtol", "NFE"]
    print(markdown_table(header, accuracy_rows((16, 64) if args.quick else (16, 256))))
    print("\n## 2. Speed, per-sample time grids (MLP fields, dopri5, rtol = atol)\n")
    header = [
        "problem",
        "tol",
        "mode",
        "nodezoo",
        "torchode",
        "NFE nodezoo / torchode",
        "torchode / nodezoo",
        "per NFE",
        "max error nodezoo / torchode",
    ]
    print(markdown_table(header, speed_rows(args)))
    size = "batch 64, tol 1e-3" if args.quick else "batch 256, tol 1e-6"
    print(f"\n## 3. Gradient modes (MLP d=64, {size}, per-sample time grids)\n")
    print(
        "Loss: a fixed random weighting of all outputs. NFE: forward + backward calls of f. "
        "Peak: PyTorch's CPU allocations above the start during one solve + backward "
        "(benchmarks/_measure.py). Gradient error: largest relative norm difference, over y0 "
        "and the parameters, from nodezoo's backprop gradients.\n"
    )
    header = ["solver, gradient", "time", "NFE", "peak memory", "gradient error"]
    print(markdown_table(header, gradient_rows(args)))
    print(f"\n({time.perf_counter() - began:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
