"""nodezoo's dopri5 against torchdiffeq and torchode: same problems, weights, initial states and
tolerances, in one process, timed round-robin.

    nice -n 10 python benchmarks/solvers.py              # full run (under ~10 min, 1 thread)
    python benchmarks/solvers.py --quick                 # ~1 min smoke run
    python benchmarks/solvers.py --json out.json --repeats 7 --device cuda

Prints Markdown tables (time, NFE, overhead over bare f, peak memory, ratios to nodezoo) and a
"targets" section whose PASS/FAIL lines are computed from this run. Column meanings and the
memory method are in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _measure import (
    calls_per_sample,
    format_bytes,
    format_ratio,
    format_seconds,
    get_clock,
    machine_description,
    markdown_table,
    median,
    peak_memory_growth,
    per_call,
    time_round_robin,
)

LIBRARIES = ("nodezoo", "torchdiffeq", "torchode")
PEERS = ("torchdiffeq", "torchode")


# --------------------------------------------------------------------------- vector fields


class MLPField(nn.Module):
    """dy/dt = W2 tanh(W1 y + b1) + b2, weights ~ N(0, gain^2 / fan_in): gain 3 makes the flow
    over [0, 1] non-trivial (about 30 dopri5 evaluations at 1e-3, 90 at 1e-6)."""

    def __init__(self, dim: int, hidden: int = 64, gain: float = 3.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        with torch.no_grad():
            for layer in (self.net[0], self.net[2]):
                std = gain / math.sqrt(layer.in_features)
                layer.weight.normal_(0.0, std)
                layer.bias.normal_(0.0, std)

    def forward(self, t, y):
        return self.net(y)


class ConcatConv2d(nn.Module):
    """A 3x3 convolution that sees time as an extra input channel (the paper's ODE-Net)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels + 1, channels, 3, padding=1)

    def forward(self, t, x):
        # t is 0-d (nodezoo, torchdiffeq) or one time per batch row (torchode).
        tt = torch.ones_like(x[:, :1]) * t.reshape(-1, 1, 1, 1).to(x.dtype)
        return self.conv(torch.cat([tt, x], dim=1))


class ConvField(nn.Module):
    """The paper's ODE function: GN -> ReLU -> ConcatConv -> GN -> ReLU -> ConcatConv -> GN."""

    def __init__(self, channels: int = 64):
        super().__init__()
        self.norm1 = nn.GroupNorm(min(32, channels), channels)
        self.conv1 = ConcatConv2d(channels)
        self.norm2 = nn.GroupNorm(min(32, channels), channels)
        self.conv2 = ConcatConv2d(channels)
        self.norm3 = nn.GroupNorm(min(32, channels), channels)

    def forward(self, t, x):
        x = self.conv1(t, torch.relu(self.norm1(x)))
        x = self.conv2(t, torch.relu(self.norm2(x)))
        return self.norm3(x)


class Counted(nn.Module):
    """Counts evaluations of ``field`` (the same way for every library); parameters shared."""

    def __init__(self, inner: nn.Module):
        super().__init__()
        self.inner = inner
        self.calls = 0

    def forward(self, t, y):
        self.calls += 1
        return self.inner(t, y)


class TorchodeField(nn.Module):
    """torchode works on (batch, features) rows; view them back as the field's state."""

    def __init__(self, inner: nn.Module, state_shape: torch.Size):
        super().__init__()
        self.inner = inner
        self.item_shape = tuple(state_shape[1:])

    def forward(self, t, y):
        return self.inner(t, y.reshape(-1, *self.item_shape)).reshape(y.shape)


# --------------------------------------------------------------------------- problems


@dataclass(frozen=True)
class Problem:
    name: str
    field: nn.Module
    y0: torch.Tensor
    modes: tuple[str, ...]  # e.g. ("forward", "backprop", "adjoint", "adjoint+seminorm")


def recorded_solve(odeint, f, y0, t, tol: float) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A no-grad solve of ``f`` and the derivatives it returned, in call order: replaying them
    gives the same step sequence with f costing nothing (the solver's own time)."""
    derivatives: list[torch.Tensor] = []

    def recording(tt, y):
        out = f(tt, y)
        derivatives.append(out)
        return out

    with torch.no_grad():
        ys = odeint(recording, y0, t, rtol=tol, atol=tol)
    return ys, derivatives


def mlp_problem(dim: int, batch: int, device: torch.device, seed: int) -> Problem:
    torch.manual_seed(seed)
    field_ = MLPField(dim).to(device)
    y0 = torch.randn(batch, dim, device=device)
    return Problem(f"mlp d={dim}", field_, y0, ("forward", "backprop", "adjoint"))


def conv_problem(batch: int, device: torch.device, seed: int, backprop: bool) -> Problem:
    torch.manual_seed(seed)
    field_ = ConvField(64).to(device)
    y0 = torch.randn(batch, 64, 6, 6, device=device)
    modes = ("forward", "adjoint", "adjoint+seminorm") + (("backprop",) if backprop else ())
    return Problem("conv 64x6x6", field_, y0, modes)


# --------------------------------------------------------------------------- solver calls


def supports(library: str, mode: str) -> bool:
    if mode == "checkpoint":
        return library == "nodezoo"
    if mode == "adjoint+seminorm":
        return library in ("nodezoo", "torchdiffeq")  # torchode has no seminorm
    return True


def make_call(
    library: str,
    mode: str,
    f: nn.Module,
    y0: torch.Tensor,
    tol: float,
    torchode_per_sample: bool,
) -> Callable[[], torch.Tensor]:
    """A closure that solves from ``y0`` over [0, 1] and returns the final state (with the
    graph or adjoint hooks its mode needs). Solver objects are built once, outside timing."""
    t = torch.tensor([0.0, 1.0], device=y0.device)
    common = dict(rtol=tol, atol=tol, method="dopri5")
    seminorm = {"norm": "seminorm"} if mode == "adjoint+seminorm" else {}
    if library == "nodezoo":
        import nodezoo.solvers as nz

        if mode in ("forward", "backprop"):
            return lambda: nz.odeint(f, y0, t, **common)[-1]
        if mode.startswith("adjoint"):
            return lambda: nz.odeint_adjoint(f, y0, t, **common, adjoint_options=seminorm)[-1]
        config = nz.SolverConfig(method="dopri5", rtol=tol, atol=tol, gradient="checkpoint")
        return lambda: nz.solve(f, y0, t, config)[-1]
    if library == "torchdiffeq":
        import torchdiffeq

        if mode in ("forward", "backprop"):
            return lambda: torchdiffeq.odeint(f, y0, t, **common)[-1]
        return lambda: torchdiffeq.odeint_adjoint(f, y0, t, **common, adjoint_options=seminorm)[-1]
    return _torchode_call(mode, f, y0, tol, torchode_per_sample)


def _torchode_call(mode: str, f: nn.Module, y0: torch.Tensor, tol: float, per_sample: bool):
    """Joint mode (default) solves the whole batch as one IVP with one error norm, which is the
    problem torchdiffeq and nodezoo solve; per-sample mode gives each row its own step size."""
    import torchode

    term = torchode.ODETerm(TorchodeField(f, y0.shape), with_stats=False)  # we count NFE
    method = torchode.Dopri5(term=term)
    controller = torchode.IntegralController(atol=tol, rtol=tol, term=term)
    batch = y0.shape[0]
    if mode == "adjoint":
        # Both adjoints take per-row problems; the joint one flattens them into one IVP.
        adjoint_cls = torchode.BacksolveAdjoint if per_sample else torchode.JointBacksolveAdjoint
        solver = adjoint_cls(term, method, controller)
        rows = batch
    else:
        # No gradient through the step-size controller: nodezoo and torchdiffeq have none.
        solver = torchode.AutoDiffAdjoint(
            method, controller, backprop_through_step_size_control=False
        )
        rows = batch if per_sample else 1
    t_start = torch.zeros(rows, device=y0.device)
    t_end = torch.ones(rows, device=y0.device)

    def call():
        problem = torchode.InitialValueProblem(y0.reshape(rows, -1), t_start, t_end)
        return solver.solve(problem).ys[:, -1]

    return call


# --------------------------------------------------------------------------- measuring


@dataclass
class Result:
    problem: str
    tol: float
    mode: str
    library: str
    time_s: float  # median on the clock chosen with --clock; drives overhead and ratios
    wall_s: float
    cpu_s: float
    nfe_forward: int
    nfe_backward: int
    overhead: float
    peak_bytes: int | None
    samples: dict[str, list[float]] = field(default_factory=dict)  # per clock
    vs_nodezoo_time: float | None = None
    vs_nodezoo_equal_nfe: float | None = None

    @property
    def nfe(self) -> int:
        return self.nfe_forward + self.nfe_backward


@dataclass
class Case:
    """One library x mode on one problem: a timed closure and a counted twin.

    ``timed`` frees the previous gradients first (as a training step's ``zero_grad`` would);
    ``counted`` does not, so call ``reset`` before measuring its memory.
    """

    library: str
    mode: str
    reset: Callable[[], None]
    timed: Callable[[], None]
    counted: Callable[[], tuple[int, int]]


def grad_mode(mode: str) -> bool:
    return mode != "forward"


def build_case(library, mode, problem: Problem, tol, args, device) -> Case:
    f, y0 = problem.field, problem.y0
    params = [p for p in f.parameters() if p.requires_grad]
    y_leaf = y0.detach().clone().requires_grad_(grad_mode(mode))
    leaves = [y_leaf, *params]
    counter = Counted(f)
    solve_timed = make_call(library, mode, f, y_leaf, tol, args.torchode_per_sample)
    solve_counted = make_call(library, mode, counter, y_leaf, tol, args.torchode_per_sample)

    def reset():
        for leaf in leaves:
            leaf.grad = None

    def once(solve) -> int:
        """Solve (and backpropagate the sum of the final state); NFE before the backward."""
        if not grad_mode(mode):
            with torch.no_grad():
                solve()
            return counter.calls
        final = solve()
        forward_calls = counter.calls
        final.sum().backward()
        return forward_calls

    def timed():
        reset()
        once(solve_timed)
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def counted():
        counter.calls = 0
        forward_calls = once(solve_counted)
        return forward_calls, counter.calls - forward_calls

    return Case(library, mode, reset, timed, counted)


def bare_field_runners(problem: Problem, clock, target_s: float):
    """The per-evaluation costs the solver cannot avoid: f alone (forward solves) and f with a
    vector-Jacobian product for y and the parameters (every adjoint/backprop evaluation)."""
    f, y0 = problem.field, problem.y0
    params = [p for p in f.parameters() if p.requires_grad]
    t0 = torch.zeros((), device=y0.device)
    cotangent = torch.randn_like(y0)

    def bare_f():
        with torch.no_grad():
            f(t0, y0)

    def bare_vjp():
        y = y0.detach().requires_grad_(True)
        torch.autograd.grad(f(t0, y), (y, *params), cotangent)

    def synced(fn):  # CUDA launches are asynchronous: time until the work is done
        if y0.device.type != "cuda":
            return fn
        return lambda: (fn(), torch.cuda.synchronize(y0.device))

    runners, divisors = {}, {}
    for name, fn in (("f", bare_f), ("f+vjp", bare_vjp)):
        fn()
        n = calls_per_sample(synced(per_call(fn, 1)), clock, target_s)
        runners[name], divisors[name] = synced(per_call(fn, n)), n
    return runners, divisors


def count_and_profile(case: Case, args, device) -> tuple[int, int, int | None]:
    """NFE forward/backward, and peak memory growth of a second, identical call."""
    case.reset()
    nfe_f, nfe_b = case.counted()
    if args.no_memory:
        return nfe_f, nfe_b, None
    case.reset()
    return nfe_f, nfe_b, peak_memory_growth(case.counted, device)


def ideal_seconds(mode: str, nfe_forward: int, nfe_backward: int, t_f: float, t_vjp: float):
    """What the evaluations alone cost outside any solver (overhead 1.0 = no solver cost)."""
    if mode == "backprop":  # every forward evaluation is replayed by autograd as a VJP
        return (nfe_forward + nfe_backward) * t_vjp
    return nfe_forward * t_f + nfe_backward * t_vjp


def measure(problem: Problem, tols, args, device, log) -> list[Result]:
    clock = get_clock(args.clock)  # for calibrating the bare-f loops only
    results = []
    for tol in tols:
        cases = [
            build_case(lib, mode, problem, tol, args, device)
            for mode in problem.modes
            for lib in args.libraries
            if supports(lib, mode)
        ]
        runners, divisors = bare_field_runners(problem, clock, args.bare_target_s)
        runners.update({(c.library, c.mode): c.timed for c in cases})
        started = time.perf_counter()
        by_clock = time_round_robin(
            runners, repeats=args.repeats, warmup=args.warmup, divisors=divisors
        )
        samples = by_clock[args.clock]
        t_f, t_vjp = median(samples["f"]), median(samples["f+vjp"])
        for c in cases:
            nfe_f, nfe_b, peak = count_and_profile(c, args, device)
            key = (c.library, c.mode)
            chosen = median(samples[key])
            results.append(
                Result(
                    problem=problem.name,
                    tol=tol,
                    mode=c.mode,
                    library=c.library,
                    time_s=chosen,
                    wall_s=median(by_clock["wall"][key]),
                    cpu_s=median(by_clock["cpu"][key]),
                    nfe_forward=nfe_f,
                    nfe_backward=nfe_b,
                    overhead=chosen / ideal_seconds(c.mode, nfe_f, nfe_b, t_f, t_vjp),
                    peak_bytes=peak,
                    samples={clock_name: s[key] for clock_name, s in by_clock.items()},
                )
            )
        log(
            f"  {problem.name} tol={tol:g}: {len(cases)} cases, bare f {format_seconds(t_f)}, "
            f"f+vjp {format_seconds(t_vjp)}, {time.perf_counter() - started:.0f} s"
        )
    add_ratios(results)
    return results


def add_ratios(results: list[Result]) -> None:
    """Peer / nodezoo: plain time, and overhead (time per unit of f work), i.e. the speed-up at
    equal NFE. Above 1 means nodezoo is faster."""
    base = {(r.problem, r.tol, r.mode): r for r in results if r.library == "nodezoo"}
    for r in results:
        ref = base.get((r.problem, r.tol, r.mode))
        if ref is not None:
            r.vs_nodezoo_time = r.time_s / ref.time_s
            r.vs_nodezoo_equal_nfe = r.overhead / ref.overhead


# Methods beyond dopri5 and the event mode, nodezoo vs torchdiffeq: (label, method, options,
# tolerance, event). Fixed-step methods get step_size 0.05 (20 steps over [0, 1]).
METHOD_CASES = (
    ("dopri8", "dopri8", {}, 1e-6, False),
    ("fehlberg2", "fehlberg2", {}, 1e-3, False),
    ("rk4 h=0.05", "rk4", {"step_size": 0.05}, 1e-6, False),
    ("explicit_adams h=0.05", "explicit_adams", {"step_size": 0.05, "max_order": 5}, 1e-6, False),
    # the corrector iterates to rtol = atol: at 1e-6 it would not converge in max_iters at h=0.05
    ("implicit_adams h=0.05", "implicit_adams", {"step_size": 0.05, "max_order": 5}, 1e-3, False),
    ("dopri5 + event", "dopri5", {}, 1e-6, True),
)


def measure_methods(problem: Problem, args, device, log) -> list[dict]:
    """Forward and backprop time of each METHOD_CASES entry, nodezoo and torchdiffeq
    round-robin on the same problem; the event solves stop where the mean of the first state
    coordinate reaches its value at t = 1/2 (found by a reference solve)."""
    import torchdiffeq

    import nodezoo.solvers as nz

    f, y0 = problem.field, problem.y0
    t = torch.tensor([0.0, 1.0], device=device)
    with torch.no_grad():
        target = float(
            nz.odeint(f, y0, torch.tensor([0.0, 0.5]), rtol=1e-9, atol=1e-9)[-1, :, 0].mean()
        )

    def event_fn(t, y):
        return y[..., 0].mean() - target

    libs = {"nodezoo": nz.odeint, "torchdiffeq": torchdiffeq.odeint}
    rows = []
    for label, method, options, tol, event in METHOD_CASES:
        for mode in ("forward", "backprop"):
            runners, counters = {}, {}
            for lib, odeint in libs.items():
                counter = Counted(f)
                y_leaf = y0.detach().clone().requires_grad_(mode == "backprop")
                kwargs = dict(rtol=tol, atol=tol, method=method, options=dict(options))
                if event:
                    kwargs["event_fn"] = event_fn

                def solve(
                    fn=f, odeint=odeint, y_leaf=y_leaf, kwargs=kwargs, mode=mode, event=event
                ):
                    if mode == "forward":
                        with torch.no_grad():
                            odeint(fn, y_leaf, t, **kwargs)
                        return
                    out = odeint(fn, y_leaf, t, **kwargs)
                    (out[1] if event else out)[-1].sum().backward()

                runners[lib] = solve
                counters[lib] = (counter, lambda c=counter, s=solve: s(fn=c))
            samples = time_round_robin(runners, repeats=args.repeats, warmup=args.warmup)
            times = {lib: median(samples[args.clock][lib]) for lib in libs}
            nfe = {}
            for lib, (counter, run) in counters.items():
                counter.calls = 0
                run()
                nfe[lib] = counter.calls
            rows.append(dict(case=label, mode=mode, times=times, nfe=nfe))
        log(f"  {label} done")
    return rows


def methods_table(rows: list[dict]) -> str:
    headers = [
        "case",
        "mode",
        "nodezoo",
        "torchdiffeq",
        "NFE nodezoo / torchdiffeq",
        "torchdiffeq / nodezoo",
    ]
    body = [
        [
            r["case"],
            r["mode"],
            format_seconds(r["times"]["nodezoo"]),
            format_seconds(r["times"]["torchdiffeq"]),
            f"{r['nfe']['nodezoo']} / {r['nfe']['torchdiffeq']}",
            format_ratio(r["times"]["torchdiffeq"] / r["times"]["nodezoo"]),
        ]
        for r in rows
    ]
    return markdown_table(headers, body)


def memory_vs_tolerance(problem: Problem, tols, args, device, log) -> dict:
    """Peak memory and NFE of the gradient modes as the tolerance tightens (untimed)."""
    configs = [
        ("nodezoo", "adjoint"),
        ("nodezoo", "backprop"),
        ("nodezoo", "checkpoint"),
        ("torchdiffeq", "adjoint"),
    ]
    configs = [(lib, mode) for lib, mode in configs if lib in args.libraries]
    table = {}
    for tol in tols:
        for lib, mode in configs:
            case = build_case(lib, mode, problem, tol, args, device)
            case.timed()  # warm-up: caches and lazily allocated buffers are not growth
            nfe_f, nfe_b, peak = count_and_profile(case, args, device)
            table[(tol, lib, mode)] = (peak, nfe_f, nfe_b)
        log(f"  memory tol={tol:g} done")
    return {"configs": configs, "tols": list(tols), "table": table}


# --------------------------------------------------------------------------- reporting


def results_table(results: list[Result]) -> str:
    headers = [
        "problem",
        "tol",
        "mode",
        "library",
        "wall",
        "cpu",
        "NFE f+b",
        "overhead",
        "peak mem",
        "time / nodezoo",
        "at equal NFE / nodezoo",
    ]
    rows = [
        [
            r.problem,
            f"{r.tol:g}",
            r.mode,
            r.library,
            format_seconds(r.wall_s),
            format_seconds(r.cpu_s),
            f"{r.nfe_forward}+{r.nfe_backward}",
            f"{r.overhead:.2f}x",
            format_bytes(r.peak_bytes),
            format_ratio(r.vs_nodezoo_time),
            format_ratio(r.vs_nodezoo_equal_nfe),
        ]
        for r in results
    ]
    return markdown_table(headers, rows)


def seminorm_table(results: list[Result]) -> tuple[str, list[dict]]:
    rows, records = [], []
    by_key = {(r.problem, r.tol, r.mode, r.library): r for r in results}
    for (prob, tol, mode, lib), off in by_key.items():
        on = by_key.get((prob, tol, "adjoint+seminorm", lib))
        if mode != "adjoint" or on is None:
            continue
        cut = 1.0 - on.nfe_backward / off.nfe_backward if off.nfe_backward else 0.0
        speedup = off.time_s / on.time_s
        records.append(
            dict(
                problem=prob,
                tol=tol,
                library=lib,
                nfe_backward_off=off.nfe_backward,
                nfe_backward_on=on.nfe_backward,
                cut=cut,
                speedup=speedup,
            )
        )
        rows.append(
            [
                prob,
                f"{tol:g}",
                lib,
                off.nfe_backward,
                on.nfe_backward,
                f"{100 * cut:.0f}%",
                format_ratio(speedup),
            ]
        )
    headers = ["problem", "tol", "library", "bwd NFE off", "bwd NFE on", "bwd NFE cut", "speed-up"]
    return markdown_table(headers, rows), records


def memory_table(mem: dict) -> str:
    headers = ["tol"] + [f"{lib} {mode}" for lib, mode in mem["configs"]]
    rows = []
    for tol in mem["tols"]:
        row = [f"{tol:g}"]
        for lib, mode in mem["configs"]:
            peak, nfe_f, nfe_b = mem["table"][(tol, lib, mode)]
            row.append(f"{format_bytes(peak)} (NFE {nfe_f}+{nfe_b})")
        rows.append(row)
    return markdown_table(headers, rows)


@dataclass
class Target:
    name: str
    case: str
    measured: float | None
    threshold: float
    higher_is_better: bool

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "NOT RUN"
        ok = (
            self.measured >= self.threshold
            if self.higher_is_better
            else self.measured <= self.threshold
        )
        return "PASS" if ok else "FAIL"


def evaluate_targets(
    results: list[Result], mem: dict | None, mlp_names, conv_name, clock: str
) -> list:
    """The team's targets, each computed from this run's numbers."""
    targets = []
    pick = lambda prob, mode, lib: [
        r for r in results if r.problem == prob and r.mode == mode and r.library == lib
    ]
    for prob in mlp_names:
        for r in pick(prob, "forward", "nodezoo"):
            targets.append(
                Target(
                    "dopri5 forward overhead <= 1.25x bare f",
                    f"{prob} tol={r.tol:g}",
                    r.overhead,
                    1.25,
                    False,
                )
            )
    for mode, threshold in (("forward", 2.0), ("adjoint", 2.0), ("backprop", 1.33)):
        for prob in mlp_names:
            for r in pick(prob, mode, "torchdiffeq"):
                targets.append(
                    Target(
                        f"{mode}: >= {threshold}x torchdiffeq at equal NFE",
                        f"{prob} tol={r.tol:g}",
                        r.vs_nodezoo_equal_nfe,
                        threshold,
                        True,
                    )
                )
    if conv_name is not None:
        for r in results:
            if r.problem == conv_name and r.library == "torchdiffeq":
                targets.append(
                    Target(
                        f"conv block: never slower than torchdiffeq ({clock} time)",
                        f"{r.mode} tol={r.tol:g}",
                        r.vs_nodezoo_time,
                        1.0,
                        True,
                    )
                )
    if (
        mem is not None
        and ("nodezoo", "adjoint") in mem["configs"]
        and not any(mem["table"][(tol, "nodezoo", "adjoint")][0] is None for tol in mem["tols"])
    ):
        peaks = [mem["table"][(tol, "nodezoo", "adjoint")][0] for tol in mem["tols"]]
        growth = max(peaks) / min(peaks) if min(peaks) > 0 else float("inf")
        tols = f"tol {max(mem['tols']):g}..{min(mem['tols']):g}"
        targets.append(
            Target("adjoint memory flat (max/min peak <= 1.10)", tols, growth, 1.10, False)
        )
    return targets


def targets_table(targets: list[Target]) -> str:
    rows = [
        [
            t.name,
            t.case,
            "-" if t.measured is None else f"{t.measured:.2f}",
            f"{'>=' if t.higher_is_better else '<='} {t.threshold:g}",
            t.verdict,
        ]
        for t in targets
    ]
    return markdown_table(["target", "case", "measured", "need", "verdict"], rows)


# --------------------------------------------------------------------------- main


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="~1 minute smoke run (small sizes)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 5; quick 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed rounds before timing")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument(
        "--clock",
        default="wall",
        choices=["wall", "cpu"],
        help="wall: perf_counter; cpu: process CPU time (robust on a shared machine)",
    )
    p.add_argument(
        "--problems",
        nargs="+",
        default=["mlp", "conv", "memory", "methods"],
        choices=["mlp", "conv", "memory", "methods"],
        help="which sections to run",
    )
    p.add_argument("--libraries", nargs="+", default=list(LIBRARIES), choices=LIBRARIES)
    p.add_argument("--no-conv-backprop", action="store_true", help="skip the costly conv backprop")
    p.add_argument(
        "--torchode-per-sample",
        action="store_true",
        help="torchode steps each batch row separately (its native mode) instead of "
        "one joint IVP; the adjoint is then its vmap BacksolveAdjoint",
    )
    p.add_argument("--no-memory", action="store_true", help="skip peak-memory measurement")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    args = p.parse_args(argv)
    if args.repeats is None:
        args.repeats = 3 if args.quick else 5
    if args.repeats < 1 or args.warmup < 0 or args.threads < 1:
        p.error("--repeats and --threads must be >= 1 and --warmup >= 0.")
    if "nodezoo" not in args.libraries:
        p.error("--libraries must include nodezoo: every ratio is relative to it.")
    for library in args.libraries:
        if importlib.util.find_spec(library) is None:
            p.error(f"{library} is not installed: pip install {library}, or leave it out of "
                    "--libraries.")  # fmt: skip
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        p.error(f"--device {args.device} asked for, but torch sees no CUDA device.")
    args.bare_target_s = 0.005 if args.quick else 0.02
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    quick = args.quick
    log = lambda msg: print(msg, file=sys.stderr, flush=True)
    began = time.perf_counter()

    mlp_tols = (1e-3,) if quick else (1e-3, 1e-6)
    mem_tols = (1e-3, 1e-5) if quick else (1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
    batch, conv_batch = (64, 8) if quick else (256, 128)
    results: list[Result] = []
    mlp_names, conv_name, mem = [], None, None

    if "mlp" in args.problems:
        log("MLP problems")
        for dim in (2, 64):
            problem = mlp_problem(dim, batch, device, args.seed)
            mlp_names.append(problem.name)
            results += measure(problem, mlp_tols, args, device, log)
    if "conv" in args.problems:
        log("conv block")
        problem = conv_problem(conv_batch, device, args.seed, backprop=not args.no_conv_backprop)
        conv_name = problem.name
        results += measure(problem, (1e-3,), args, device, log)
    method_rows = []
    if "methods" in args.problems:
        log("other methods and events")
        method_rows = measure_methods(mlp_problem(64, batch, device, args.seed), args, device, log)
    if "memory" in args.problems:
        log("memory vs tolerance")
        mem = memory_vs_tolerance(
            mlp_problem(64, batch, device, args.seed), mem_tols, args, device, log
        )

    import torchdiffeq

    import nodezoo

    try:  # --libraries nodezoo torchdiffeq runs without it (e.g. on a lent GPU machine)
        import torchode

        torchode_version = torchode.__version__
    except ImportError:
        torchode_version = "not installed"

    print("# nodezoo solver benchmark\n")
    print(
        f"torch {torch.__version__}, nodezoo {getattr(nodezoo, '__version__', '?')}, torchdiffeq "
        f"{torchdiffeq.__version__}, torchode {torchode_version}; {machine_description()}, "
        f"device {device}, {args.threads} thread(s); median of {args.repeats} round-robin "
        f"samples after {args.warmup} warm-up round(s); batch {batch} (conv {conv_batch}); "
        f"dopri5, rtol = atol; torchode {'per-sample' if args.torchode_per_sample else 'joint'}"
        f"{'; QUICK run' if quick else ''}.\n"
    )
    print(f"Overhead and ratios use the **{args.clock}** clock.", end=" ")
    if results:
        busy = median([r.wall_s / r.cpu_s for r in results if r.cpu_s > 0])
        print(f"Median wall / cpu time {busy:.2f}", end="")
        if busy > 1.1 and args.clock == "wall":
            print(": the machine was busy, wall-time ratios are noisy; try --clock cpu.", end="")
        print()
    print()
    sections = {}
    mlp_results = [r for r in results if r.problem in mlp_names]
    conv_results = [r for r in results if r.problem == conv_name]
    if mlp_results:
        print("## 1. Batched MLP field (hidden 64, tanh)\n")
        print(results_table(mlp_results) + "\n")
    if conv_results:
        print("## 2. Paper conv ODE block (GN/ReLU/ConcatConv2d x2/GN)\n")
        print(results_table(conv_results) + "\n")
        text, sections["seminorm"] = seminorm_table(conv_results)
        print("Seminorm (adjoint_options={'norm': 'seminorm'}) on the adjoint's backward pass:\n")
        print(text + "\n")
    if mem is not None:
        print("## 3. Peak memory growth vs tolerance (MLP d=64)\n")
        print(memory_table(mem) + "\n")
    if method_rows:
        print("## 4. Other methods and event handling vs torchdiffeq (MLP d=64, over [0, 1])\n")
        print(
            "Adaptive methods at rtol = atol = tol, fixed-step ones with step_size 0.05; the "
            "event solve stops where mean(y[:, 0]) reaches its t = 1/2 value. The ratio is "
            f"{args.clock} time, above 1 when nodezoo is faster.\n"
        )
        print(methods_table(method_rows) + "\n")
    targets = evaluate_targets(results, mem, mlp_names, conv_name, args.clock)
    if targets:
        print("## Targets\n")
        print(targets_table(targets) + "\n")
    total = time.perf_counter() - began
    print(f"Total benchmark time {total:.0f} s.")

    if args.json is not None:
        payload = {
            "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "results": [asdict(r) for r in results],
            "memory_vs_tolerance": None
            if mem is None
            else [
                dict(
                    tol=tol,
                    library=lib,
                    mode=mode,
                    peak_bytes=peak,
                    nfe_forward=nf,
                    nfe_backward=nb,
                )
                for (tol, lib, mode), (peak, nf, nb) in mem["table"].items()
            ],
            "seminorm": sections.get("seminorm"),
            "methods": method_rows,
            "targets": [dict(asdict(t), verdict=t.verdict) for t in targets],
            "total_s": total,
        }
        args.json.write_text(json.dumps(payload, indent=2))
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
