"""Independent solves: every sample of a batch with its own times, step sizes and error control.

``solve`` integrates a batch as one ODE: one step size for all samples, chosen from the error
norm of the whole batch. A sample's result then depends on what else is in its batch: a hard
sample forces small steps on all, and the RMS over the batch lets a few samples' errors hide
behind the others' (``benchmarks/independent.py`` measures both). ``solve_independent`` gives
each sample ``b`` its own output times ``t[b]``, its own step size and its own accept/reject
decision from its own error norm, so each sample gets what it would get solved alone (the steps
``solve`` takes on that sample alone: the tests check it), as torchode's "parallel" solving
does. Each function evaluation still covers the whole batch (a finished sample, or one whose
step was rejected, is evaluated in place and masked out), so a solve costs as many evaluations
as its hardest sample needs.

Why our own loop rather than running ``solve`` per sample: one batched evaluation per stage for
all samples, which is what makes a neural vector field fast. Why not torchode: this one uses
nodezoo's tableaus, dense output, first-step rule and errors, so ``SolverConfig``,
``SolveStats`` and the failure messages mean the same as in ``solve``, and it is measurably
faster (``benchmarks/results/independent_cpu.md``: 1.10-1.37x at equal NFE and accuracy; its
checkpoint gradients take 1/41 of the time and 1/29 of the memory of torchode's per-sample
adjoint).

Scope: explicit Runge–Kutta methods, adaptive (outputs from their dense output) or fixed-step
(``step_size``, stepping exactly onto every output time, as ``solve``); gradients by backprop
through the steps or by checkpointing (each attempt's start kept, the attempt redone in the
backward pass: the same exact gradients without the stages' graph). No adjoint: per sample it
would carry a parameter gradient per sample (torchode's BacksolveAdjoint does, through vmap);
it, and the implicit, Adams and scipy methods, are refused with an error that says so.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .config import SolverConfig
from .errors import MaxStepsExceeded, NonFiniteState, SolverConfigError, StepSizeUnderflow
from .inputs import check_state, check_time_tensor, default_params, time_dtype, tolerance
from .methods import get_method
from .stats import SolveStats, _set_last
from .tableaus import ButcherTableau, get_tableau

__all__ = ["solve_independent"]

# torchdiffeq's I-controller, as ``StepController()``'s defaults
_SAFETY, _IFACTOR, _DFACTOR = 0.9, 10.0, 0.2


def solve_independent(
    func: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y0: torch.Tensor,
    t: torch.Tensor,
    config: SolverConfig | dict | None = None,
    *,
    params: Sequence[torch.Tensor] | None = None,
    stats: SolveStats | None = None,
) -> torch.Tensor:
    """Solve ``dy_b/dt = func(t, y)_b`` for every sample ``b`` of the batch ``y0`` on its own.

    ``y0``: ``(batch, *shape)``. ``t``: ``(batch, n_t)``, each row strictly monotone (rows may
    run in different directions), or ``(n_t,)`` shared by all samples. ``func(t, y)`` receives
    ``t`` of shape ``(batch,)`` (each sample's own time, in the state's dtype) and ``y`` of
    shape ``(batch, *shape)``, and returns ``dy/dt`` of ``y``'s shape; row ``b`` of its output
    must depend on row ``b`` of ``y`` only (no batch norm across samples).

    Returns ``(n_t, batch, *shape)``: ``out[i, b]`` is sample ``b`` at ``t[b, i]``, the layout
    of ``solve``. ``config`` as ``solve``'s (``method``, ``rtol``, ``atol``, ``step_size``,
    ``first_step``, ``max_steps``, ``gradient`` 'backprop' or 'checkpoint'; without one,
    dopri5 at 1e-3 with backprop). ``params``: the tensors checkpoint gradients flow to
    (default: ``func.parameters()`` for an ``nn.Module``). ``stats``: NFE (whole-batch
    evaluations) and per-sample accepted and rejected steps, summed over samples.

    A step that is rejected for one sample is still part of the autograd graph with a zero
    gradient; if ``func`` overflows to inf or NaN there, its backward can turn that zero into
    NaN, as with any masked computation. Keep the field finite (or use ``solve`` per sample).
    """
    config = SolverConfig(gradient="backprop") if config is None else SolverConfig.from_dict(config)
    if stats is None:
        stats = SolveStats()
    _set_last(stats)
    if isinstance(y0, (tuple, list)):
        raise SolverConfigError(
            "solve_independent takes y0 as one tensor of shape (batch, ...); concatenate the "
            "parts of a tuple state along their last dimension."
        )
    check_state(y0)
    if y0.dim() == 0 or y0.shape[0] == 0:
        raise SolverConfigError(
            f"y0 must have a batch dimension first, shape (batch, ...); got {tuple(y0.shape)}."
        )
    times = _batch_times(t, y0)
    _check_method(config)
    params = tuple(default_params(func) if params is None else params)
    needs_graph = torch.is_grad_enabled() and (
        y0.requires_grad or any(p.requires_grad for p in params)
    )
    if config.gradient == "adjoint" and needs_graph:
        raise SolverConfigError(
            "solve_independent has no adjoint gradients (a per-sample adjoint would carry a "
            "parameter gradient per sample). Use gradient='checkpoint' (exact, memory of two "
            "states per step) or 'backprop', or solve(...) for the adjoint."
        )
    tab = get_tableau(config.method)
    problem = _Problem(
        field=_BatchField(func, y0, stats),
        tab=tab,
        times=times,
        rtol=tolerance(config.rtol, [y0], "rtol"),
        atol=tolerance(config.atol, [y0], "atol"),
        config=config,
        stats=stats,
    )
    y = y0.reshape(y0.shape[0], -1)
    if config.gradient == "checkpoint" and needs_graph:
        out = _CheckpointedSolve.apply(problem, y, *params)
    else:
        out = _assemble(problem.run(y), times.shape[1], y)
    return out.view(times.shape[1], *y0.shape)


@dataclass
class _Problem:
    field: _BatchField
    tab: ButcherTableau
    times: torch.Tensor
    rtol: float
    atol: float
    config: SolverConfig
    stats: SolveStats

    def run(self, y0: torch.Tensor, record: list | None = None) -> list:
        """The solve from ``y0``: its output pieces ``(rows, cols, values)``."""
        stepper = _Stepper(self.field, self.tab, y0)
        if self.tab.adaptive and self.config.step_size is None:
            return _adaptive(
                self.field, stepper, y0, self.times, self.rtol, self.atol, self.config,
                self.stats, record,
            )  # fmt: skip
        return _fixed(self.field, stepper, y0, self.times, self.config, self.stats, record)


def _assemble(pieces: list, n_t: int, y: torch.Tensor) -> torch.Tensor:
    """``(n_t, batch, n)`` from the solve's ``(rows, cols, values)`` pieces."""
    rows, cols, values = (torch.cat(parts) for parts in zip(*pieces, strict=True))
    return y.new_zeros(n_t, *y.shape).index_put((cols, rows), values)


class _CheckpointedSolve(torch.autograd.Function):
    """``gradient='checkpoint'``: the forward solve runs without a graph and keeps each
    attempt's starting state (and start derivative); the backward pass redoes the attempts
    from the last to the first with their recorded decisions and backpropagates through
    each: exact gradients of the discrete solve (as ``solve``'s checkpoint mode), with memory
    for two states per attempt instead of every stage's graph."""

    @staticmethod
    def forward(ctx, problem: _Problem, y0, *params):
        record = []
        pieces = problem.run(y0.detach(), record)
        ctx.problem, ctx.record = problem, record
        ctx.save_for_backward(y0, *params)
        return _assemble(pieces, problem.times.shape[1], y0)

    @staticmethod
    def backward(ctx, g_out):
        problem, record = ctx.problem, ctx.record
        y0, *params = ctx.saved_tensors
        field = problem.field
        field.counter = "nfe_backward"
        stepper = _Stepper(field, problem.tab, y0)
        g_params = [None] * len(params)

        def backprop(outputs, grads, inputs):
            pairs = [(o, g) for o, g in zip(outputs, grads, strict=True) if g is not None]
            found = torch.autograd.grad(
                [o for o, _ in pairs], [*inputs, *params], [g for _, g in pairs],
                allow_unused=True,
            )  # fmt: skip
            for i, g in enumerate(found[len(inputs) :]):
                if g is not None:
                    g_params[i] = g if g_params[i] is None else g_params[i] + g
            return found[: len(inputs)]

        g_y, g_k = torch.zeros_like(y0), None
        with torch.enable_grad():
            for attempt, y, k0 in reversed(record):
                y = y.detach().requires_grad_(True)
                k0 = None if k0 is None else k0.detach().requires_grad_(True)
                y_next, k_next, value = stepper.take(attempt, y, k0)
                g_value = None if value is None else g_out[attempt.cols, attempt.rows]
                inputs = [y] if k0 is None else [y, k0]
                found = backprop([y_next, k_next, value], [g_y, g_k, g_value], inputs)
                g_y = found[0]  # y_next is where(accepted, y1, y): it always depends on y
                g_k = found[1] if k0 is not None else None
                problem.stats.steps_backward += 1
            if g_k is not None:  # the first k0 is f(t0, y0)
                y = y0.detach().requires_grad_(True)
                (g_from_k,) = backprop([field(problem.times[:, 0], y)], [g_k], [y])
                if g_from_k is not None:
                    g_y = g_y + g_from_k
        return None, g_y + g_out[0], *g_params


def _batch_times(t, y0: torch.Tensor) -> torch.Tensor:
    """``t`` as a float64 ``(batch, n_t)`` tensor on y0's device, each row checked."""
    if not isinstance(t, torch.Tensor):
        t = torch.as_tensor(t, dtype=torch.float64)
    batch = y0.shape[0]
    check_time_tensor(t, y0)
    if t.requires_grad and torch.is_grad_enabled():
        raise SolverConfigError(
            "solve_independent has no gradients with respect to t; detach t (t.detach()), or "
            "use solve(...) with one shared time grid, which differentiates t."
        )
    if t.dim() == 1:
        t = t.expand(batch, -1)
    if t.dim() != 2 or t.shape[0] != batch or t.shape[1] == 0:
        raise SolverConfigError(
            f"t must be (batch, n_t) = ({batch}, n_t) with n_t >= 1, or (n_t,) shared by all "
            f"samples; got shape {tuple(t.shape)} for y0 of shape {tuple(y0.shape)}."
        )
    t = t.detach().to(torch.float64)
    if not bool(torch.isfinite(t).all()):
        bad = torch.nonzero(~torch.isfinite(t).all(1)).flatten().tolist()
        raise SolverConfigError(f"t has NaN or infinite values in {_listed('row', bad)}.")
    if t.shape[1] > 1:
        d = t.diff(dim=1)
        monotone = (d > 0).all(1) | (d < 0).all(1)
        if not bool(monotone.all()):
            bad = torch.nonzero(~monotone).flatten().tolist()
            raise SolverConfigError(
                f"Each row of t must be strictly increasing or strictly decreasing (no "
                f"repeats); not so in {_listed('row', bad)}. Sort each sample's times first."
            )
    return t


def _check_method(config: SolverConfig) -> None:
    spec = get_method(config.method)
    if spec.family != "runge_kutta":
        raise SolverConfigError(
            f"solve_independent runs explicit Runge–Kutta methods (dopri5, tsit5, bosh3, "
            f"rk4, ...); {config.method!r} is not one (family {spec.family!r}). Use solve(...) "
            "for it."
        )
    if config.backend != "native":
        raise SolverConfigError(
            f"solve_independent has no {config.backend!r} backend; use backend='native'."
        )
    if config.warm_start:
        raise SolverConfigError(
            "solve_independent picks each sample's first step itself; warm_start=True does not "
            "apply to it (set warm_start=False)."
        )


def _listed(noun: str, indices: list[int]) -> str:
    """``"row 3"``, ``"rows 1, 4"``, ``"rows 0, 1, ..., 7 (and 5 more)"``."""
    shown = ", ".join(map(str, indices[:8]))
    more = f" (and {len(indices) - 8} more)" if len(indices) > 8 else ""
    return f"{noun}{'s' if len(indices) > 1 else ''} {shown}{more}"


class _BatchField:
    """``func`` on flat ``(batch, n)`` states, with the time cast to the state's dtype, its
    output shape checked once, and every evaluation counted."""

    def __init__(self, func, y0: torch.Tensor, stats: SolveStats):
        self.func, self.shape, self.stats = func, y0.shape, stats
        self.time_dtype = time_dtype(y0)
        self.checked = False
        self.counter = "nfe_forward"  # the checkpoint's backward pass counts nfe_backward

    def __call__(self, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        setattr(self.stats, self.counter, getattr(self.stats, self.counter) + 1)
        out = self.func(t.to(self.time_dtype), y.view(self.shape))
        if not self.checked:
            if not isinstance(out, torch.Tensor) or out.shape != self.shape:
                got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise SolverConfigError(
                    f"func must return dy/dt of y's shape {tuple(self.shape)}; it returned {got}."
                )
            if out.dtype != y.dtype:
                raise SolverConfigError(
                    f"func returned {out.dtype} for a {y.dtype} state; return the state's dtype."
                )
            self.checked = True
        return out.reshape(y.shape)


def _combination(weights, ks: list[torch.Tensor]) -> torch.Tensor:
    """``sum_j w_j k_j`` over the non-zero weights (Python floats: no coefficient tensors)."""
    total = None
    for w, k in zip(weights, ks):
        if w == 0.0:
            continue
        total = k * w if total is None else torch.add(total, k, alpha=w)
    return total if total is not None else torch.zeros_like(ks[0])


@dataclass
class _Attempt:
    """One step attempt for the whole batch, as decided: enough to redo it exactly
    (``gradient='checkpoint'`` recomputes attempts from their starting states).

    ``h``: the step tried per sample (0 for finished ones); ``accepted``: whose step stands;
    ``t_next``: each sample's time after it; ``rows``/``cols``: the (sample, output index)
    pairs it produced; ``theta``: where in the step each lies (None: at its end, for steps
    that land on output times); ``carry``: whether the next attempt needs a new ``k0`` from
    it (not after the last attempt, nor when a method without FSAL had all steps rejected)."""

    t: torch.Tensor
    h: torch.Tensor
    accepted: torch.Tensor
    t_next: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    theta: torch.Tensor | None
    carry: bool


class _Stepper:
    """A tableau's step on a batch with one step size per sample.

    Without grad mode the stages go into one reused ``(stages, batch * n)`` buffer and each
    stage input is one matrix-vector product (as ``rk.RungeKutta``'s no-grad step); with it,
    the stages stay separate tensors for autograd and are stacked once per step.
    """

    def __init__(self, field, tab: ButcherTableau, y: torch.Tensor):
        self.field, self.tab = field, tab
        self.c, self.a, self.b, self.b_error = _coefficients(tab, y.dtype, y.device)
        self.buffer = torch.empty(tab.stages, y.numel(), dtype=y.dtype, device=y.device)
        self.stages = self.buffer.view(tab.stages, *y.shape)
        if tab.has_dense_output:  # weights at theta: theta**powers @ poly
            poly = tab.dense_polynomials()
            self.poly = torch.as_tensor(poly, dtype=y.dtype, device=y.device).t()
            self.powers = torch.arange(poly.shape[1], device=y.device)

    def advance(self, a: _Attempt, y, k0, y1, stages):
        """After the step of attempt ``a`` (its solution ``y1`` and ``stages``): the state and
        start derivative of the next attempt, and the attempt's output values (or None)."""
        keep = a.accepted.unsqueeze(1)
        y_next = torch.where(keep, y1, y)
        k_next = k0  # unchanged unless the next attempt needs a new one
        if a.carry:
            if self.tab.fsal:
                k_next = torch.where(keep, stages[-1], k0)
            else:  # a new start needs f there
                k_next = torch.where(keep, self.field(a.t_next, y_next), k0)
        value = None
        if a.rows.numel():
            rows = a.rows
            if a.theta is None:  # the step landed on the output time
                value = y1[rows]
            else:
                theta = a.theta.to(y.dtype).unsqueeze(1)
                weights = (theta.pow(self.powers) @ self.poly).unsqueeze(1)
                step = torch.bmm(weights, stages[:, rows].transpose(0, 1)).squeeze(1)
                h = a.h[rows].to(y.dtype).unsqueeze(1)
                value = torch.where(theta >= 1.0, y1[rows], torch.addcmul(y[rows], h, step))
        return y_next, k_next, value

    def take(self, a: _Attempt, y, k0):
        """Attempt ``a`` from ``y`` (and ``k0``; None: f(t, y) is evaluated, as each fixed
        step does) with its decisions already made: ``advance``'s results. The fixed-step
        loop steps this way; checkpoint gradients redo recorded attempts this way."""
        if k0 is None:
            k0 = self.field(a.t, y)
        y1, stages = self.step(a.t, a.h, y, k0)
        return self.advance(a, y, k0, y1, stages)

    def step(self, t, h, y, k0):
        """From ``(t, y)`` with ``f(t, y) = k0`` by ``h`` (float64, per sample; 0 for samples
        standing still): the solution and the stages ``(stages, batch, n)``."""
        tab, field = self.tab, self.field
        times = torch.addcmul(t, self.c, h).to(field.time_dtype)  # (stages, batch)
        hs = h.to(y.dtype).unsqueeze(1)
        if torch.is_grad_enabled():
            ks = [k0]
            yi = y
            for i, row in enumerate(tab.a, 1):
                yi = torch.addcmul(y, hs, _combination(row, ks))
                ks.append(field(times[i], yi))
            if not tab.fsal:
                yi = torch.addcmul(y, hs, _combination(tab.b, ks))
            return yi, torch.stack(ks)
        K, rows = self.buffer, self.stages
        rows[0].copy_(k0)
        yi = y
        for i, a in enumerate(self.a, 1):
            yi = torch.addcmul(y, hs, torch.mv(K[:i].t(), a).view_as(y))
            rows[i].copy_(field(times[i], yi))
        if not tab.fsal:
            yi = torch.addcmul(y, hs, torch.mv(K.t(), self.b).view_as(y))
        return yi, rows

    def error_ratio(self, stages, y, y1, h, rtol, atol) -> torch.Tensor:
        """Each sample's RMS error over its tolerance scale; <= 1 accepts. As
        ``rk._ErrorRatio``: scale ``atol/rtol + max(|y0|, |y1|)``, then ``/ rtol``."""
        with torch.no_grad():
            flat = stages.detach().view(stages.shape[0], -1)
            err = torch.mv(flat.t(), self.b_error).view_as(y)
            y_abs = torch.maximum(y.detach().abs(), y1.detach().abs())
            scale = y_abs.add_(atol / rtol) if rtol > 0 else y_abs.mul_(rtol).add_(atol)
            norm = torch.linalg.vector_norm(err.div_(scale), dim=1).double()
            return norm.mul_(h.abs() / (math.sqrt(max(y.shape[1], 1)) * (rtol or 1.0)))


@functools.lru_cache(maxsize=64)
def _coefficients(tab: ButcherTableau, dtype: torch.dtype, device: torch.device):
    """The tableau as tensors (built once per method, dtype and device): c (float64, as a
    column), the rows of a, b and b_error."""
    as_tensor = lambda v: torch.tensor(v, dtype=dtype, device=device)
    c = torch.tensor(tab.c, dtype=torch.float64, device=device).unsqueeze(1)
    b_error = None if tab.b_error is None else as_tensor(tab.b_error)
    return c, [as_tensor(row) for row in tab.a], as_tensor(tab.b), b_error


def _first_step(field, t0, y0, f0, order: int, rtol, atol, direction):
    """Hairer, Nørsett & Wanner's starting step (``step_control.initial_step_size``), per sample."""
    rms = lambda x: torch.linalg.vector_norm(x, dim=1).double() / math.sqrt(max(x.shape[1], 1))
    with torch.no_grad():
        scale = y0.abs() * rtol + atol
        d0 = rms(y0 / scale)
        d1 = rms(f0 / scale)
        h0 = torch.where((d0 < 1e-5) | (d1 < 1e-5), 1e-6, 0.01 * d0 / d1)
        y_euler = torch.addcmul(y0, (direction * h0).to(y0.dtype).unsqueeze(1), f0)
        f1 = field(t0 + direction * h0, y_euler)
        d2 = rms((f1 - f0) / scale) / h0
        largest = torch.maximum(d1, d2)
        h1 = torch.where(
            largest <= 1e-15,
            torch.clamp(h0 * 1e-3, min=1e-6),
            (0.01 / largest) ** (1.0 / (order + 1)),
        )
        h = direction * torch.minimum(100 * h0, h1)
        return torch.where(torch.isfinite(d1) & torch.isfinite(d2), h, direction * 1e-6)


def _step_factor(ratio: torch.Tensor, accepted: torch.Tensor, order: int) -> torch.Tensor:
    """The I-controller's factor per sample (``_ControllerState`` with ``pcoeff=0``): after
    an acceptance in ``[1, ifactor]`` (``ifactor`` for a zero error), after a rejection in
    ``[dfactor, 1]`` (``dfactor`` for a non-finite error)."""
    # a rejected ratio is > 1 (or NaN, mapped to 0), so its factor is below safety < 1 already:
    # only the lower bound differs between the two cases
    factor = torch.nan_to_num(ratio.pow(-1.0 / order).mul_(_SAFETY), nan=0.0)
    return torch.maximum(factor.clamp_(max=_IFACTOR), torch.where(accepted, 1.0, _DFACTOR))


def _start(y0, times):
    """Where both loops start: each row's t0, t_end and direction (rows are strictly monotone:
    never 0), the output pieces so far (y0 at t0) and each sample's next output index."""
    t0, t_end = times[:, 0], times[:, -1]
    first = (torch.arange(y0.shape[0], device=y0.device), torch.zeros_like(t0, dtype=torch.long))
    return t0, t_end, (t_end - t0).sign(), [(*first, y0)], torch.ones_like(first[1])


def _adaptive(field, stepper: _Stepper, y0, times, rtol, atol, config, stats, record=None):
    """The adaptive loop; appends ``(attempt, y, k0)`` to ``record`` when given."""
    tab = stepper.tab
    batch, n_t = y0.shape[0], times.shape[1]
    t0, t_end, direction, pieces, index = _start(y0, times)
    if n_t == 1:
        return pieces
    ascending = times * direction.unsqueeze(1)  # rows sorted, for searchsorted
    columns = torch.arange(n_t, device=y0.device)
    order = tab.control_order
    t, y = t0.clone(), y0
    k0 = field(t, y)
    if config.first_step is None:
        h = _first_step(field, t, y, k0, order - 1, rtol, atol, direction)
    else:
        h = direction * abs(float(config.first_step))
    accepted_total = rejected_total = 0
    attempts = 0
    done = torch.zeros(batch, dtype=torch.bool, device=y0.device)
    while True:
        # a finished sample sits at its t_end exactly, so its step is 0
        remaining = t_end - t
        hits_end = direction * (h - remaining) >= 0
        h_try = torch.where(hits_end, remaining, h)
        y1, stages = stepper.step(t, h_try, y, k0)
        ratio = stepper.error_ratio(stages, y, y1, h_try, rtol, atol)
        active = ~done
        accepted = active & (ratio <= 1.0)  # NaN compares False: rejected
        t_new = torch.where(hits_end, t_end, t + h_try)
        # the outputs each accepted step passed (index <= j < passed), from its dense output
        passed = torch.searchsorted(ascending, (t_new * direction).unsqueeze(1), right=True)
        passed = torch.where(accepted, passed.squeeze(1), index)
        due = (columns >= index.unsqueeze(1)) & (columns < passed.unsqueeze(1))
        rows, cols = torch.nonzero(due, as_tuple=True)
        index, done = passed, passed >= n_t
        finished = bool(done.all())
        attempt = _Attempt(
            t=t,
            h=h_try,
            accepted=accepted,
            t_next=torch.where(accepted, t_new, t),
            rows=rows,
            cols=cols,
            # where in the step each output lies (none to place: nothing to compute)
            theta=(times[rows, cols] - t[rows]) / h_try[rows] if rows.numel() else None,
            carry=not finished and (tab.fsal or bool(accepted.any())),
        )
        if record is not None:
            record.append((attempt, y, k0))
        y, k0, value = stepper.advance(attempt, y, k0, y1, stages)
        if value is not None:
            pieces.append((rows, cols, value))
        t = attempt.t_next
        n_active, n_accepted = active.sum(), accepted.sum()
        accepted_total = accepted_total + n_accepted
        rejected_total = rejected_total + (n_active - n_accepted)
        attempts += 1
        if finished:
            break
        h = h_try * _step_factor(ratio, accepted, order)
        # steps shrink only when rejected: check for underflow after rejections only
        rejected = active & ~accepted if bool(n_active != n_accepted) else None
        _check_progress(attempts, config.max_steps, done, t, h, ratio, rejected, times)
    stats.steps_accepted += int(accepted_total)
    stats.steps_rejected += int(rejected_total)
    return pieces


def _check_progress(attempts, max_steps, done, t, h, ratio, rejected, times) -> None:
    """Raise when a sample cannot finish: too many attempts, or (``rejected``: the samples
    whose step was just rejected, None if none was) its step underflowed."""
    active = ~done
    if attempts >= max_steps:
        rows = torch.nonzero(active).flatten().tolist()
        b = rows[0]
        raise MaxStepsExceeded(
            f"Reached max_steps={max_steps} attempts with {_listed('sample', rows)} unfinished "
            f"(sample {b} at t={float(t[b]):.6g} of [{float(times[b, 0]):.6g}, "
            f"{float(times[b, -1]):.6g}], step size {float(h[b]):.3g}). The problem may be "
            "stiff or the tolerances too tight; raise max_steps, loosen rtol/atol, or "
            "regularise the dynamics.",
            t=float(t[b]),
            step_size=float(h[b]),
        )
    if rejected is None:
        return
    tiny = rejected & (h.abs() <= 4 * torch.finfo(torch.float64).eps * t.abs().clamp(min=1.0))
    if bool(tiny.any()):
        rows = torch.nonzero(tiny).flatten().tolist()
        b = rows[0]
        if not bool(torch.isfinite(ratio[b])):
            raise NonFiniteState(
                f"The state or the vector field became NaN or infinite for "
                f"{_listed('sample', rows)} (sample {b} near t={float(t[b]):.6g}), at ever "
                "smaller steps. Check func for divisions by zero or overflow there.",
                t=float(t[b]),
                step_size=float(h[b]),
            )
        raise StepSizeUnderflow(
            f"Step size underflowed for {_listed('sample', rows)} (sample {b} at "
            f"t={float(t[b]):.6g}, step {float(h[b]):.3g}): the solution changes too fast for "
            "this tolerance (stiff or blowing-up dynamics). Loosen rtol/atol, use float64, or "
            "regularise the dynamics.",
            t=float(t[b]),
            step_size=float(h[b]),
        )


def _fixed(field, stepper: _Stepper, y0, times, config, stats, record=None):
    """Steps of ``step_size`` from each sample's t0 (``t0 + k h``, as ``solve``), or from
    output time to output time without one, landing exactly on every output time; appends
    ``(attempt, y, None)`` to ``record`` when given."""
    n_t = times.shape[1]
    t0, t_end, direction, pieces, index = _start(y0, times)
    done = index >= n_t
    step_size = config.step_size
    if step_size is not None and step_size <= 0:
        raise SolverConfigError(f"step_size must be positive, got {step_size}.")
    # grid points this close to an output time merge into it (``rk._fixed_grid``'s rule)
    merge = 1e-9 * (t_end - t0).abs().clamp(min=1e-30)
    k = torch.zeros_like(t0)  # grid points consumed
    t, y = t0.clone(), y0
    steps = 0
    while not bool(done.all()):
        active = ~done
        t_out = times.gather(1, index.clamp(max=n_t - 1).unsqueeze(1)).squeeze(1)
        t_next = t_out
        if step_size is not None:
            t_grid = t0 + direction * (k + 1) * step_size
            passed = direction * (t_grid - t) <= merge  # a grid point merged into the last output
            while bool((passed & active).any()):
                k = k + passed
                t_grid = t0 + direction * (k + 1) * step_size
                passed = direction * (t_grid - t) <= merge
            grid_first = direction * (t_grid - t_out) < -merge
            t_next = torch.where(grid_first, t_grid, t_out)
            k = k + (grid_first | ((t_grid - t_out).abs() <= merge))
        h = torch.where(active, t_next - t, 0.0)
        lands = active & (t_next == t_out)
        rows = torch.nonzero(lands).flatten()
        attempt = _Attempt(
            t=t,
            h=h,
            accepted=active,
            t_next=torch.where(active, t_next, t),
            rows=rows,
            cols=index[rows],
            theta=None,
            carry=False,
        )
        if record is not None:
            record.append((attempt, y, None))
        y, _, value = stepper.take(attempt, y, None)
        if value is not None:
            pieces.append((rows, attempt.cols, value))
        index = index + lands
        t = attempt.t_next
        done = index >= n_t
        stats.steps_accepted += int(active.sum())
        steps += 1
        if steps >= config.max_steps and not bool(done.all()):
            raise MaxStepsExceeded(
                f"step_size={step_size} needs more than max_steps={config.max_steps} steps for "
                f"{_listed('sample', torch.nonzero(~done).flatten().tolist())}. Use a larger "
                "step_size or raise max_steps.",
                t=float(t[~done][0]),
                step_size=step_size,
            )
    finite = torch.isfinite(y.detach()).all(1)
    if not bool(finite.all()):
        rows = torch.nonzero(~finite).flatten().tolist()
        raise NonFiniteState(
            f"The solution became NaN or infinite for {_listed('sample', rows)}. Use a smaller "
            "step_size or an adaptive method (dopri5), or check func for overflow.",
            step_size=step_size,
        )
    return pieces
