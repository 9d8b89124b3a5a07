"""The one Runge–Kutta engine: fixed and adaptive steps, dense output, step recording.

Everything works on a flat 1-D state; ``nodezoo.solvers.odeint`` flattens user states and
wraps the vector field. Times and step sizes are Python floats, so step-size control costs no
tensor operations; the only host sync per step is reading the scalar error norm.

Without autograd, stage derivatives live in a reused ``(stages, N)`` matrix ``K``, and every
stage input and error estimate is one ``addmv``/``mv`` against it (solutions sum their
increment first, see ``_combine``). With autograd, each step fills a fresh ``K`` with the same
arithmetic (bit-identical results), and ``_StageSum`` gives each stage its gradient directly.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from .errors import MaxStepsExceeded, NonFiniteState, SolverConfigError, StepSizeUnderflow
from .step_control import (
    FirstStepMemory,
    StepController,
    float_norm,
    initial_step_size,
    scalar_operand,
)
from .tableaus import ButcherTableau


class FlatField:
    """Calls a vector field on the flat state and counts evaluations.

    ``func(t, y)`` sees ``t`` as a 0-d tensor of the time dtype and ``y`` in the user's shape(s).
    """

    def __init__(
        self,
        func: Callable,
        shapes: Sequence[torch.Size],
        *,
        time_dtype: torch.dtype,
        device: torch.device,
        is_tuple: bool,
    ):
        self.func = func
        self.shapes = [tuple(s) for s in shapes]  # view() parses tuples faster than Size
        self.sizes = [math.prod(s) for s in self.shapes]
        self.time_dtype = time_dtype
        self.device = device
        self.is_tuple = is_tuple
        self.nfe = 0
        self._checked = False
        self._shape0 = self.shapes[0]
        self._already_flat = not is_tuple and len(self._shape0) == 1
        self._evaluate = None

    def time(self, t: float, toward: float | None = None) -> torch.Tensor:
        tt = torch.scalar_tensor(t, dtype=self.time_dtype, device=self.device)
        if toward is not None:  # one ulp of the time dtype to the side of a discontinuity
            tt = torch.nextafter(tt, torch.full_like(tt, toward))
        return tt

    def unflatten(self, y: torch.Tensor):
        if self._already_flat:
            return y
        if not self.is_tuple:
            return y.view(self._shape0)
        return tuple(p.view(s) for p, s in zip(y.split(self.sizes), self.shapes, strict=True))

    @property
    def row_shape(self) -> tuple[int, ...]:
        """Shape of ``raw``'s output."""
        return (sum(self.sizes),) if self.is_tuple else self._shape0

    def raw(self, t: float, y: torch.Tensor, toward: float | None = None) -> torch.Tensor:
        """Like calling, but a single-tensor field's output keeps its own shape (the caller
        copies it into a matching view, saving a reshape)."""
        if self.is_tuple or not self._checked:
            return self(t, y, toward).view(self.row_shape)
        self.nfe += 1
        return self.func(self.time(t, toward), self.unflatten(y))

    @property
    def evaluate(self) -> Callable[[float, torch.Tensor], torch.Tensor]:
        """``raw`` without ``toward``, as one closure once the output has been checked: the
        step loop's per-stage call, where method layers and branches are measurable."""
        if self._evaluate is not None:
            return self._evaluate
        if self.is_tuple or not self._checked:
            return self.raw
        func = self.func
        # new_full on a 0-d tensor of the time dtype/device: torch.full((), t) without the
        # argument parsing; view_as a template: view(shape) without parsing the shape
        zero_time = torch.zeros((), dtype=self.time_dtype, device=self.device)
        template = torch.empty(self._shape0, dtype=torch.bool, device="meta")

        if self._already_flat:

            def evaluate(t: float, y: torch.Tensor) -> torch.Tensor:
                self.nfe += 1
                return func(zero_time.new_full((), t), y)
        else:

            def evaluate(t: float, y: torch.Tensor) -> torch.Tensor:
                self.nfe += 1
                return func(zero_time.new_full((), t), y.view_as(template))

        self._evaluate = evaluate
        return evaluate

    def __call__(self, t: float, y: torch.Tensor, toward: float | None = None) -> torch.Tensor:
        """``toward`` nudges t by one ulp toward that time (evaluating beside a jump in f)."""
        self.nfe += 1
        out = self.func(self.time(t, toward), self.unflatten(y))
        if not self._checked:
            self._check(out, y)
        if self._already_flat:
            return out
        if not self.is_tuple:
            return out.reshape(-1)
        return torch.cat([o.reshape(-1) for o in out])

    def _check(self, out, y: torch.Tensor) -> None:
        outs = tuple(out) if self.is_tuple else (out,)
        if self.is_tuple and not isinstance(out, (tuple, list)):
            raise SolverConfigError(
                f"y0 is a tuple of {len(self.shapes)} tensors, so func must return a tuple of "
                f"as many tensors; it returned {type(out).__name__}."
            )
        if len(outs) != len(self.shapes):
            raise SolverConfigError(
                f"func returned {len(outs)} tensors for a tuple state of {len(self.shapes)}; "
                "return one derivative per part of y0, in the same order."
            )
        for i, (o, shape) in enumerate(zip(outs, self.shapes, strict=True)):
            where = f"func's output {i}" if self.is_tuple else "func's output"
            if not isinstance(o, torch.Tensor):
                raise SolverConfigError(f"{where} is a {type(o).__name__}, expected a tensor.")
            if tuple(o.shape) != shape:
                raise SolverConfigError(
                    f"{where} has shape {tuple(o.shape)} but the state has shape {tuple(shape)}; "
                    "dy/dt must have the same shape as y."
                )
            if o.dtype != y.dtype:
                raise SolverConfigError(
                    f"{where} has dtype {o.dtype} but the state is {y.dtype}; "
                    "cast the vector field or y0 so they match."
                )
            if o.device != y.device:
                raise SolverConfigError(
                    f"{where} is on {o.device} but the state is on {y.device}; "
                    "move the vector field (e.g. `.to(device)`) or y0."
                )
        self._checked = True


class PlainFlatField:
    """A function ``f(t: float, y_flat, toward) -> flat`` with FlatField's interface (used for
    the adjoint's augmented system, which already works on flat tensors)."""

    def __init__(self, func: Callable[..., torch.Tensor], size: int):
        self.func = func
        self.row_shape = (size,)

    def __call__(self, t: float, y: torch.Tensor, toward: float | None = None) -> torch.Tensor:
        return self.func(t, y, toward)

    raw = evaluate = __call__


@dataclass
class StepRecord:
    """An accepted step, kept for checkpointed gradients: where it started and what it emitted."""

    t: float
    h: float
    y: torch.Tensor
    outputs: list[tuple[int, float]] = field(default_factory=list)  # (output index, theta)
    after_jump: bool = False  # f0 taken on the far side of a jump at t
    ends_on_jump: bool = False


@dataclass
class StepHooks:
    """Callbacks of the step loop, each called as ``hook(t, y, h)`` with the step's start and
    (signed) size: ``step`` before every attempt, ``accept``/``reject`` after an adaptive
    attempt's verdict (torchdiffeq's ``callback_step``/``callback_accept_step``/...)."""

    step: Callable | None = None
    accept: Callable | None = None
    reject: Callable | None = None


class EventSearch:
    """A terminal event: stop where ``fn(t, y)`` first reaches zero.

    ``fn(t: float, y_flat) -> float`` is positive at the start (``odeint`` combines a
    multi-output event function into one). After each step the solver asks ``crossed``; the
    root is then bracketed in that step and found on its interpolant to the resolution of the
    time (``locate``). ``interp`` (``linear`` or ``cubic``) is the interpolant that fixed-step
    methods use to bracket; adaptive methods use their dense output. ``time`` holds the event
    time found.
    """

    def __init__(self, fn: Callable[[float, torch.Tensor], float], interp: str):
        self.fn = fn
        self.interp = interp
        self.time: float | None = None

    def crossed(self, t: float, y: torch.Tensor) -> bool:
        with torch.no_grad():
            return not self.fn(t, y) > 0.0

    def locate(self, t: float, h: float, y_at: Callable[[float], torch.Tensor]) -> float:
        """The fraction theta of the step [t, t + h] where the event happens (the root lies
        in (0, 1]); ``y_at(theta)`` interpolates the state.

        Regula falsi with the Illinois modification on the bracket, a bisection whenever an
        iteration fails to halve it, down to a few ulps of t: the root of the interpolant,
        so the event time is as accurate as the dense output (torchdiffeq bisects only to
        atol in time: scipy Radau's event times were 1000x closer than nodezoo's then)."""
        resolution = 4 * math.ulp(max(abs(t), abs(t + h)))
        with torch.no_grad():
            lo, hi = 0.0, 1.0
            g_lo, g_hi = self.fn(t, y_at(0.0)), self.fn(t + h, y_at(1.0))
            side, bisect = 0, False
            for _ in range(200):
                width = hi - lo
                if width * abs(h) <= resolution:
                    break
                step = g_hi * width / (g_hi - g_lo) if g_hi != g_lo else math.nan
                theta = 0.5 * (lo + hi) if bisect or not (0 < step < width) else hi - step
                g = self.fn(t + theta * h, y_at(theta))
                if g > 0.0:
                    lo, g_lo = theta, g
                    if side == -1:  # the same end kept twice: halve its value (Illinois)
                        g_hi *= 0.5
                    side = -1
                else:  # crossed (NaN included, as in ``crossed``)
                    hi, g_hi = theta, g
                    if side == 1:
                        g_lo *= 0.5
                    side = 1
                bisect = hi - lo > 0.5 * width
        return hi


class _StageBuffer:
    """K (stages x n) with its precomputed views: ``prefixes[i] = K[:i].T`` (what stage i
    reads), ``rows[i] = K[i]`` and ``shaped_rows[i]``: row i in the field's output shape.
    ``stages`` lists, for stages 1.., what the no-grad step needs in one tuple each: (the
    prefix it reads, its coefficients, its node c, the row it writes, its single term).
    ``error_scratch`` holds ``_ErrorRatio``'s temporaries."""

    def __init__(self, rk: RungeKutta, n: int, row_shape: tuple[int, ...]):
        s = rk.tableau.stages
        self.key = (n, row_shape)
        self.K = torch.empty(s, n, dtype=rk.dtype, device=rk.device)
        self.error_scratch = _ErrorScratch(self.K[0])
        self.prefixes = [self.K[:i].t() for i in range(s + 1)]
        self.rows = list(self.K.unbind(0))
        self.shaped_rows = [r.view(row_shape) for r in self.rows]
        self.stages = [
            (self.prefixes[i], rk.a[i - 1], rk.tableau.c[i], self.shaped_rows[i], single)
            for i, single in enumerate(rk.single_terms, 1)
        ]


class RungeKutta:
    """Tableau coefficients as tensors on one device/dtype, and the step they define.

    ``RungeKutta.get`` caches one per (method, dtype, device) and thread, so repeated solves
    (a training loop) build no coefficient tensors and reuse the no-grad stage buffer. A solve
    nested inside another's vector field finds the cached one busy and gets its own buffer.
    """

    _cache = threading.local()

    def __init__(self, tableau: ButcherTableau, dtype: torch.dtype, device: torch.device):
        self.tableau = tableau
        self.dtype = dtype
        self.device = device
        as_t = lambda v: torch.tensor(v, dtype=dtype, device=device)
        self.c = tableau.c
        self.a = [as_t(row) for row in tableau.a]
        self.b = as_t(tableau.b)
        self.b_error = None if tableau.b_error is None else as_t(tableau.b_error)
        # stage i + 1 reading one earlier stage only: (that stage, its coefficient), else None
        self.single_terms = [_single_term(row) for row in tableau.a]
        self._last_stage = None
        self._buffers: dict[tuple, _StageBuffer] = {}
        self._current: _StageBuffer | None = None
        self.busy = False

    @classmethod
    def get(cls, tableau: ButcherTableau, dtype: torch.dtype, device: torch.device) -> RungeKutta:
        cache = cls._cache.__dict__.setdefault("instances", {})
        key = (tableau.name, dtype, device)
        rk = cache.get(key)
        if rk is None:
            rk = cache[key] = cls(tableau, dtype, device)
        return rk

    @property
    def adaptive(self) -> bool:
        return self.tableau.adaptive

    def claim(self) -> RungeKutta:
        """This instance marked busy, or a fresh copy sharing its coefficients if it is."""
        if not self.busy:
            self.busy = True
            return self
        other = object.__new__(RungeKutta)
        other.__dict__.update(self.__dict__)
        other._buffers, other._current = {}, None
        other.busy = True
        return other

    def buffer(self, n: int, row_shape: tuple[int, ...]) -> _StageBuffer:
        """The reused no-grad stage buffer for states of n entries (one per size, so a
        training loop alternating forward and adjoint solves allocates nothing)."""
        key = (n, row_shape)
        buf = self._current
        if buf is not None and buf.key == key:
            return buf
        buf = self._buffers.get(key)
        if buf is None:
            if len(self._buffers) >= 4:
                self._buffers.clear()
            buf = self._buffers[key] = _StageBuffer(self, n, row_shape)
        self._current = buf
        return buf

    def carry_fsal(self, K: torch.Tensor, grad: bool) -> torch.Tensor:
        """The next step's f0 from an accepted FSAL step.

        In the reused buffer it moves to row 0 now, so a rejected next attempt (which
        overwrites the other rows) cannot corrupt it.
        """
        if grad:  # the stage itself, not a row of the stacked K (whose gradient is all of K)
            stage, self._last_stage = self._last_stage, None
            return stage
        buf = self._current
        buf.rows[0].copy_(buf.rows[-1])
        return buf.rows[0]

    def step(
        self,
        f: FlatField,
        t: float,
        h: float,
        y: torch.Tensor,
        f0: torch.Tensor,
        grad: bool,
        last_stage: int | None = None,
        ends_on_jump: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One step from (t, y) of size h; returns (y1, K). ``f0 = f(t, y)``.

        ``last_stage`` stops after that stage (checkpoint recomputation skips the FSAL stage
        when nothing needs it). ``ends_on_jump``: f jumps at t + h, so stages there see the
        side the step comes from.
        """
        tab = self.tableau
        s = tab.stages if last_stage is None else last_stage + 1
        if grad:
            return self._step_autograd(f, t, h, y, f0, s, ends_on_jump)
        buf = self.buffer(y.shape[0], f.row_shape)
        if f0 is not buf.rows[0]:
            buf.rows[0].copy_(f0)
        stages = buf.stages if s == tab.stages else buf.stages[: s - 1]
        solution_stage = tab.fsal and s == tab.stages  # its input is the solution
        last = len(stages) - 1
        if ends_on_jump:
            evaluate = f.raw
            jump_nodes = [c == 1.0 for _, _, c, _, _ in stages]
        else:
            evaluate = f.evaluate
        rows = buf.rows
        yi = y
        for i, (prefix, a, c, row, single) in enumerate(stages):
            if single is not None:  # one add (the autograd step takes the same)
                yi = torch.add(y, rows[single[0]], alpha=h * single[1])
            elif i == last and solution_stage:
                yi = _combine(y, prefix, a, h)
            else:
                yi = torch.addmv(y, prefix, a, alpha=h)
            # the field's output goes straight into K's row, in the field's own shape
            if ends_on_jump and jump_nodes[i]:  # evaluate on the side the step comes from
                row.copy_(evaluate(t + h, yi, t))
            else:
                row.copy_(evaluate(t + c * h, yi))
        if solution_stage:
            return yi, buf.K
        return _combine(y, buf.prefixes[s], self.b[:s], h), buf.K

    def _step_autograd(self, f, t, h, y, f0, s, ends_on_jump):
        """The same step recorded by autograd, with the same arithmetic (the stage values are
        copied into a fresh K and combined by ``_StageSum``, so both paths agree bit for bit)."""
        tab = self.tableau
        K = torch.empty(tab.stages, y.shape[0], dtype=self.dtype, device=self.device)
        rows = K.unbind(0)
        ks = [f0]
        solution_stage = tab.fsal and s == tab.stages
        yi = y
        with torch.no_grad():
            rows[0].copy_(f0)
        for i in range(1, s):
            last = solution_stage and i == s - 1
            single = self.single_terms[i - 1]
            if single is not None:
                yi = torch.add(y, ks[single[0]], alpha=h * single[1])
            else:
                yi = _StageSum.apply(y, K[:i].t(), self.a[i - 1], h, last, *ks)
            toward = t if ends_on_jump and tab.c[i] == 1.0 else None
            ki = f(t + h if toward is not None else t + tab.c[i] * h, yi, toward)
            ks.append(ki)
            with torch.no_grad():
                rows[i].copy_(ki)
        if not solution_stage:  # a truncated FSAL step's unused last stage has weight 0 in b
            yi = _StageSum.apply(y, K[:s].t(), self.b[:s], h, True, *ks)
        self._last_stage = ks[-1]
        return yi, _Stacked.apply(K, *ks)

    def interpolate(self, y: torch.Tensor, K: torch.Tensor, h: float, theta: float):
        w = torch.as_tensor(self.tableau.dense_weights(theta), dtype=self.dtype).to(self.device)
        return torch.addmv(y, K.t(), w, alpha=h)


class _StageSum(torch.autograd.Function):
    """``y + h * KT @ w`` (``_combine``'d when ``increment_first``) from the detached stage
    matrix, as the no-grad step computes it; the stages ``ks`` (KT's columns) are inputs only
    for the backward, which hands stage j ``h w_j g`` in one outer product and saves no
    tensors (a differentiable K would carry a full-size gradient through every stage)."""

    @staticmethod
    def forward(ctx, y, KT, w, h, increment_first, *ks):
        ctx.hw = w * h
        return _combine(y, KT, w, h) if increment_first else torch.addmv(y, KT, w, alpha=h)

    @staticmethod
    def backward(ctx, g):
        stage_grads = torch.outer(ctx.hw, g)
        return (g, None, None, None, None, *stage_grads.unbind(0))


class _Stacked(torch.autograd.Function):
    """K (already filled with the stages' values) as a differentiable stack of ``ks``, for
    dense output and checkpoint recomputation, without copying the stages again."""

    @staticmethod
    def forward(ctx, K, *ks):
        return K.view_as(K)

    @staticmethod
    def backward(ctx, grad_K):
        return (None, *grad_K.unbind(0))


def _single_term(row: tuple[float, ...]) -> tuple[int, float] | None:
    nonzero = [(j, w) for j, w in enumerate(row) if w != 0.0]
    return nonzero[0] if len(nonzero) == 1 else None


def _combine(y: torch.Tensor, KT: torch.Tensor, w: torch.Tensor, h: float) -> torch.Tensor:
    """``y + h * KT @ w`` with the increment summed first: ``addmv`` adds the stages into y one
    by one (BLAS gemv), rounding at y's scale once per stage, a bias that float32 solutions
    accumulate over many steps (torchdiffeq, summing first, does not). Used for solutions;
    stage inputs, whose rounding barely reaches the solution, keep the one-op ``addmv``."""
    return torch.add(y, torch.mv(KT, w), alpha=h)


def adaptive_stops(step_t, jump_t, t0, t_end, direction, event: bool):
    """(stops, jumps) of an adaptive solve: the times its steps must end on, in the direction
    of integration (the end time last, or +-inf for an event solve, which has none), and the
    set of those that are jumps of f."""
    if not event:
        stops = direction_sorted([*step_t, *jump_t, t_end], t0, t_end, direction)
    else:
        stops = direction_sorted([*step_t, *jump_t], t0, direction * math.inf, direction)
        stops.append(direction * math.inf)
    return stops, set(float(v) for v in jump_t)


def direction_sorted(values, t0: float, t1: float, direction: float) -> list[float]:
    inside = [float(v) for v in values if (v - t0) * direction > 0 and (t1 - v) * direction >= 0]
    return sorted(set(inside), key=lambda v: v * direction)


def _raise_non_finite(t: float, h: float) -> None:
    raise NonFiniteState(
        f"The ODE state became NaN or infinite near t={t:.6g} (step size {h:.3g}). The "
        "dynamics may blow up there: check the vector field and its inputs, lower the learning "
        "rate, use float64, or tighten the tolerances.",
        t=t,
        step_size=h,
    )


def integrate(
    f: FlatField,
    y0: torch.Tensor,
    times: Sequence[float],
    rk: RungeKutta,
    *,
    rtol: float | torch.Tensor,
    atol: float | torch.Tensor,
    norm: Callable[[torch.Tensor], torch.Tensor],
    step_size: float | None = None,
    first_step: float | FirstStepMemory | None = None,
    max_steps: int = 100_000,
    min_step: float = 0.0,
    max_step: float = math.inf,
    step_t: Sequence[float] = (),
    jump_t: Sequence[float] = (),
    grid: Sequence[float] | None = None,
    perturb: bool = False,
    controller: StepController | None = None,
    hooks: StepHooks | None = None,
    event: EventSearch | None = None,
    record: list[StepRecord] | None = None,
    dense: list | None = None,
    counts: dict | None = None,
) -> list[torch.Tensor]:
    """Solve from ``times[0]`` through every time in ``times`` (monotonic); returns the states.

    Fixed steps (no ``step_size``-less adaptive method) land on ``grid`` (or every
    ``step_size``) and on every output time; ``perturb`` evaluates f one ulp inside each step,
    as if f jumped at every grid point. Adaptive steps keep ``min_step <= |h| <= max_step``
    (a step at ``min_step`` is accepted whatever its error).
    With ``event``, ``times[1]`` only gives the direction: the solve runs until the event and
    returns ``[y0, y(event)]``, the event time going to ``event.time``.
    ``record``, if given, receives one ``StepRecord`` per accepted step; ``dense`` (adaptive
    steps) one ``(t, h, y, K)`` per accepted step, for ``RungeKutta.interpolate``.
    ``counts`` receives ``accepted``/``rejected`` step counts.
    """
    grad = torch.is_grad_enabled()
    if counts is None:
        counts = {}
    counts.setdefault("accepted", 0)
    counts.setdefault("rejected", 0)
    outputs = [y0]
    if len(times) == 1:
        return outputs
    t0, t_end = float(times[0]), float(times[-1])
    direction = 1.0 if t_end > t0 else -1.0
    if event is not None:
        with torch.no_grad():
            at_start = event.fn(t0, y0) == 0.0
        if at_start:
            event.time = t0
            return [y0, y0]
    if hasattr(rk, "solve_all"):  # a whole-solve backend (scipy)
        return rk.solve_all(f, y0, times, rtol=rtol, atol=atol)
    rk = rk.claim()
    try:
        if rk.adaptive and step_size is None and hasattr(rk, "integrate_adaptive"):
            rk.integrate_adaptive(
                f, y0, times, outputs, direction, rtol=rtol, atol=atol, norm=norm,
                first_step=first_step, max_steps=max_steps, min_step=min_step,
                max_step=max_step, step_t=step_t, jump_t=jump_t,
                controller=controller or StepController(), hooks=hooks, event=event,
                record=record, dense=dense, counts=counts, grad=grad,
            )  # fmt: skip
        elif rk.adaptive and step_size is None:
            _integrate_adaptive(
                f, y0, times, rk, outputs, grad, direction,
                rtol=rtol, atol=atol, norm=norm, first_step=first_step, max_steps=max_steps,
                min_step=min_step, max_step=max_step, step_t=step_t, jump_t=jump_t,
                controller=controller or StepController(), hooks=hooks, event=event,
                record=record, dense=dense, counts=counts,
            )  # fmt: skip
        else:
            _integrate_fixed(
                f, y0, times, rk, outputs, grad, direction, step_size, max_steps, step_t,
                jump_t, grid, perturb, hooks, event, record, counts,
            )  # fmt: skip
    finally:
        rk.busy = False
        if isinstance(rk, RungeKutta):
            rk._last_stage = None  # it would keep the last step's graph alive
    return outputs


def _fixed_grid(times, y0, direction, step_size, max_steps, step_t, jump_t, grid):
    """The step end points of a fixed-step solve, output times included; ``grid(t0, t1, y0)``
    gives the points to step on between them (instead of every ``step_size``)."""
    t0, t_end = float(times[0]), float(times[-1])
    stops = list(times[1:]) + list(step_t) + list(jump_t)
    if grid is not None:
        stops += list(grid(t0, t_end, y0))
    elif step_size is not None:
        if step_size <= 0:
            raise SolverConfigError(f"step_size must be positive, got {step_size}.")
        n = math.ceil(abs(t_end - t0) / step_size - 1e-9)
        if n > max_steps:
            raise MaxStepsExceeded(
                f"step_size={step_size} needs {n} steps over [{t0}, {t_end}], more than "
                f"max_steps={max_steps}. Use a larger step_size or raise max_steps "
                "(options['max_num_steps'] in odeint).",
                t=t0,
                step_size=step_size,
            )
        stops += [t0 + direction * k * step_size for k in range(1, n)]
    points = direction_sorted(stops, t0, t_end, direction)
    # Drop grid points closer than a tiny fraction of a step to an output time.
    tol = 1e-9 * max(abs(t_end - t0), 1e-30)
    merged: list[float] = []
    for v in points:
        if merged and abs(v - merged[-1]) <= tol:
            if v in times:
                merged[-1] = v
            continue
        merged.append(v)
    return merged, tol


def _event_grid(t0, direction, step_size, max_steps):
    """Step end points of a fixed-step event search: every step_size until max_steps."""
    if step_size is None:
        raise SolverConfigError(
            "Event handling with a fixed-step method needs options={'step_size': ...}."
        )
    return (t0 + direction * k * step_size for k in range(1, max_steps + 1))


def _integrate_fixed(
    f, y0, times, rk, outputs, grad, direction, step_size, max_steps, step_t, jump_t, grid,
    perturb, hooks, event, record, counts,
):  # fmt: skip
    """Steps of ``step_size`` (or ``grid``, or the output grid), landing exactly on every
    output time; with ``event``, steps until the event and then one step onto it."""
    t0 = float(times[0])
    if event is None:
        merged, tol = _fixed_grid(times, y0, direction, step_size, max_steps, step_t, jump_t, grid)
    else:
        merged, tol = _event_grid(t0, direction, step_size, max_steps), 0.0
    t, y = t0, y0
    out_i = 1
    jumps = set(float(v) for v in jump_t)
    jump = False  # did the previous step end on a jump?
    step_hook = hooks.step if hooks is not None else None
    h = 0.0
    for t_next in merged:
        h = t_next - t
        if step_hook is not None:
            step_hook(t, y, h)
        ends_on_jump = perturb or t_next in jumps
        if record is not None:
            record.append(StepRecord(t, h, y, [], jump or perturb, ends_on_jump))
        f0 = f(t, y, toward=t + h if jump or perturb else None)
        jump = t_next in jumps
        y_prev = y
        y, _ = rk.step(f, t, h, y, f0, grad, ends_on_jump=ends_on_jump)
        counts["accepted"] += 1
        if event is not None:
            if event.crossed(t_next, y):
                y = _land_on_event(f, rk, event, t, h, y_prev, f0, y, grad, ends_on_jump, record)
                outputs.append(y)
                return outputs
            t = t_next
            continue
        t = t_next
        while out_i < len(times) and abs(times[out_i] - t) <= tol:
            if record is not None:
                record[-1].outputs.append((out_i, 1.0))
            outputs.append(y)
            out_i += 1
    if event is not None:
        raise MaxStepsExceeded(
            f"No event within max_steps={max_steps} steps of {step_size} from t={t0:.6g}; "
            "raise max_num_steps or check event_fn.",
            t=t,
            step_size=step_size,
        )
    if not bool(torch.isfinite(outputs[-1]).all()):
        _raise_non_finite_output(times, outputs, step_size if step_size is not None else h)
    return outputs


def _raise_non_finite_output(times, outputs, h: float) -> None:
    """A fixed-step solve checks its state once, at the end (a check per step would cost a
    host sync each): localise the blow-up to the first non-finite output and the last finite
    one before it."""
    bad = next(i for i, y in enumerate(outputs) if not bool(torch.isfinite(y).all()))
    raise NonFiniteState(
        f"The ODE state became NaN or infinite between t={float(times[bad - 1]):.6g} (the last "
        f"output time where it was finite) and t={float(times[bad]):.6g} (step size "
        f"{h:.3g}). The dynamics may blow up there: check the vector field and its inputs, "
        "lower the learning rate or the step size, use float64, or use an adaptive method.",
        t=float(times[bad]),
        step_size=h,
    )


def _land_on_event(f, rk, event, t, h, y0, f0, y1, grad, ends_on_jump, record):
    """Bracket the event in the step [t, t + h] with the linear or cubic Hermite interpolant of
    its ends, then take one step from t exactly onto the event (exact to the method's order,
    and differentiable like any other step)."""
    with torch.no_grad():
        y0d, y1d, f0d = y0.detach(), y1.detach(), f0.detach()
        if event.interp == "cubic":
            f1 = f(t + h, y1d)

            def y_at(th):
                h00, h10 = (1 + 2 * th) * (1 - th) ** 2, th * (1 - th) ** 2
                h01, h11 = th * th * (3 - 2 * th), th * th * (th - 1)
                return h00 * y0d + h10 * h * f0d + h01 * y1d + h11 * h * f1

        else:

            def y_at(th):
                return torch.lerp(y0d, y1d, th)

        theta = event.locate(t, h, y_at)
    event.time = t + theta * h
    if theta >= 1.0:
        if record is not None:
            record[-1].outputs.append((1, 1.0))
        return y1
    h_event = theta * h
    if record is not None:
        record[-1] = StepRecord(t, h_event, y0, [(1, 1.0)], record[-1].after_jump, False)
    y_event, _ = rk.step(f, t, h_event, y0, f0, grad)
    return y_event


class _ErrorRatio:
    """Each attempt's ``norm(err / (atol + rtol max(|y0|, |y1|)))`` without h (the caller
    scales by |h|), as ``norm(err / max(s(y0), s(y1)))`` with ``s(y) = atol + rtol |y|`` per
    entry: s is monotonic and so is rounding, so that is the same scale to the last bit, and
    ``accept`` hands the attempt's s(y1) on as the next step's s(y0).

    With scalar tolerances and a built-in norm (all homogeneous), rtol comes out of the scale:
    ``s(y) = atol / rtol + |y|`` and the norm is divided by rtol on the host, one tensor
    operation fewer per step.

    This runs once per attempt on tensors that are small in the cases where solver overhead
    shows, so it avoids what costs as much as the arithmetic there: its temporaries are the
    no-grad stage buffer's ``scratch`` (``out=``, no allocation; without one, in autograd
    solves, they are allocated per attempt as before), and its scalar operands are cached 0-d
    tensors (``scalar_operand``).
    """

    def __init__(self, b_error, rtol, atol, norm, homogeneous: bool, y0, scratch=None):
        self.b_error, self.norm = b_error, norm
        y0 = y0.detach()
        self.inv_rtol = self.rtol = None
        if homogeneous and isinstance(rtol, float) and isinstance(atol, float) and rtol > 0:
            offset = atol / rtol
            if offset < torch.finfo(y0.dtype).max / 16:  # float16 states can overflow
                self.atol, self.inv_rtol = scalar_operand(offset, y0), 1.0 / rtol
        if self.inv_rtol is None:
            self.rtol = scalar_operand(rtol, y0) if isinstance(rtol, float) else rtol
            self.atol = scalar_operand(atol, y0) if isinstance(atol, float) else atol
        self._buffered = scratch is not None
        if scratch is None:
            self._err = self._scale = self._s_y1 = None
            self.s_y0 = self._scaled(y0.abs())
        else:
            self._err = scratch.err if homogeneous else None  # a user's norm may keep its input
            self._scale, self.s_y0, self._s_y1 = scratch.scales
            self._scaled(torch.abs(y0, out=self.s_y0))

    def _scaled(self, abs_y: torch.Tensor) -> torch.Tensor:
        """s(y) from |y|, in place."""
        if self.rtol is not None:
            abs_y.mul_(self.rtol)
        return abs_y.add_(self.atol)

    def __call__(self, KT: torch.Tensor, y1: torch.Tensor) -> float:
        err = torch.mv(KT, self.b_error, out=self._err)
        s_y1 = self._s_y1 = self._scaled(torch.abs(y1, out=self._s_y1))
        err.div_(torch.maximum(self.s_y0, s_y1, out=self._scale))
        if self.inv_rtol is not None:
            return self.norm(err) * self.inv_rtol
        return self.norm(err)

    def accept(self) -> None:
        """The attempt's s(y1) becomes s(y0); a buffered s(y0) is the next attempt's s(y1)."""
        self.s_y0, self._s_y1 = self._s_y1, (self.s_y0 if self._buffered else None)


class _ErrorScratch:
    """``_ErrorRatio``'s temporaries for states like ``y``: the error estimate and three
    vectors of |y|'s dtype (real for a complex state): the scale, s(y0) and s(y1)."""

    def __init__(self, y: torch.Tensor):
        self.err = torch.empty_like(y)
        real = y[:0].abs().dtype
        self.scales = list(torch.empty(3, *y.shape, dtype=real, device=y.device).unbind(0))


def _integrate_adaptive(
    f, y0, times, rk, outputs, grad, direction, *, rtol, atol, norm, first_step, max_steps,
    min_step, max_step, step_t, jump_t, controller, hooks, event, record, dense, counts,
):  # fmt: skip
    tab = rk.tableau
    t0, t_end = float(times[0]), float(times[-1])
    stops, jumps = adaptive_stops(step_t, jump_t, t0, t_end, direction, event is not None)
    homogeneous = getattr(norm, "homogeneous", False)
    norm = float_norm(norm)
    clamp = min_step > 0.0 or max_step < math.inf
    memory = first_step if isinstance(first_step, FirstStepMemory) else None
    if memory is not None:  # learnt from the previous solve (None: nothing yet)
        first_step = memory.value
    f0 = f(t0, y0)
    if first_step is None:
        # the error estimate is of the embedded (order - 1) solution, hence its exponent
        h = initial_step_size(f, t0, y0, f0, tab.control_order - 1, rtol, atol, norm, direction)
    else:
        h = direction * abs(float(first_step))
    # the no-grad loop's cached buffer (an autograd solve has none)
    scratch = None if grad else rk.buffer(y0.shape[0], f.row_shape).error_scratch
    error_ratio = _ErrorRatio(rk.b_error, rtol, atol, norm, homogeneous, y0, scratch)
    t, y = t0, y0
    stop_i = 0
    accepted = AcceptedSteps(rk, times, outputs, direction, record, dense, event)
    steps = 0
    s = tab.stages
    last_non_finite = False
    after_jump = False
    ctrl = controller.start(tab.control_order)
    step_hook = accept_hook = reject_hook = None
    if hooks is not None:
        step_hook, accept_hook, reject_hook = hooks.step, hooks.accept, hooks.reject
    while not accepted.done:
        if clamp:
            h = direction * min(max(abs(h), min_step), max_step)
        t_stop = stops[stop_i]
        h_try = h
        hits_stop = (t + h_try - t_stop) * direction >= 0
        if hits_stop:
            h_try = t_stop - t
        on_jump = hits_stop and t_stop in jumps
        if step_hook is not None:
            step_hook(t, y, h_try)
        y1, K = rk.step(f, t, h_try, y, f0, grad, ends_on_jump=on_jump)
        if grad:
            with torch.no_grad():
                ratio = error_ratio(K.t(), y1.detach())
        else:
            ratio = error_ratio(rk._current.prefixes[s], y1)
        ratio *= abs(h_try)
        steps += 1
        if ratio <= 1.0 or (clamp and abs(h_try) <= min_step):  # NaN compares False: rejected
            counts["accepted"] += 1
            h = h_try * ctrl.accept(ratio)
            if memory is not None:  # the next solve starts where this one's controller went
                memory.value, memory = abs(h), None
            if accept_hook is not None:
                accept_hook(t, y, h_try)
            t_new = t_stop if hits_stop else t + h_try
            if accepted.take(t, h_try, y, y1, K, t_new, after_jump, on_jump):
                break
            t, y = t_new, y1
            error_ratio.accept()
            after_jump = on_jump
            if hits_stop:
                stop_i += 1
            if on_jump:  # the FSAL derivative belongs to the other side of the jump
                f0 = f(t, y, toward=t + direction)
            elif tab.fsal:
                f0 = rk.carry_fsal(K, grad)
            else:
                f0 = f(t, y)
            last_non_finite = False
        else:
            counts["rejected"] += 1
            if reject_hook is not None:
                reject_hook(t, y, h_try)
            last_non_finite = not math.isfinite(ratio)
            h = h_try * ctrl.reject(ratio)
        if steps >= max_steps:
            raise MaxStepsExceeded(
                f"Reached max_steps={max_steps} at t={t:.6g} of [{t0:.6g}, {t_end:.6g}] "
                f"(step size {h:.3g}). The problem may be stiff or the tolerances too tight "
                f"(rtol={float(rtol) if not isinstance(rtol, torch.Tensor) else 'tensor'}); raise "
                "max_steps (options['max_num_steps'] in odeint), loosen rtol/atol, or "
                "regularise the dynamics.",
                t=t,
                step_size=h,
            )
        if abs(h) <= 4 * math.ulp(max(abs(t), 1.0)) and not min_step > abs(h):
            if last_non_finite:
                _raise_non_finite(t, h)
            raise StepSizeUnderflow(
                f"Step size underflowed to {h:.3g} at t={t:.6g}: the solution changes too fast "
                "for this tolerance (stiff or blowing-up dynamics). Loosen rtol/atol, use float64, "
                "or regularise the dynamics.",
                t=t,
                step_size=h,
            )
    return outputs


class AcceptedSteps:
    """Where an adaptive loop's accepted steps go, the explicit and the implicit loops alike:
    each step's ``StepRecord`` and dense segment, then the output times it reaches (from the
    solver's dense output) or, in an event solve, the event inside it. ``done`` once the last
    output or the event is out."""

    def __init__(self, solver, times, outputs, direction, record, dense, event):
        self.solver, self.times, self.outputs, self.direction = solver, times, outputs, direction
        self.record, self.dense, self.event = record, dense, event
        self.out_i, self.n_out = 1, len(times)
        self.done = False

    def take(self, t, h, y, y1, K, t_new, after_jump: bool, on_jump: bool) -> bool:
        """Hand on the accepted step from (t, y) of size h to (t_new, y1), stages K; returns
        ``done``."""
        record, outputs = self.record, self.outputs
        if record is not None:
            record.append(StepRecord(t, h, y, [], after_jump, on_jump))
        if self.dense is not None:
            self.dense.append((t, h, y, K.clone()))
        if self.event is not None:
            if self.event.crossed(t_new, y1):
                outputs.append(interpolate_event(self.solver, self.event, t, h, y, K, y1, record))
                self.done = True
            return self.done
        times, out_i, direction = self.times, self.out_i, self.direction
        while out_i < self.n_out and (times[out_i] - t_new) * direction <= 0:
            theta = (times[out_i] - t) / h
            outputs.append(y1 if theta >= 1.0 else self.solver.interpolate(y, K, h, theta))
            if record is not None:
                record[-1].outputs.append((out_i, theta))
            out_i += 1
        self.out_i = out_i
        self.done = out_i >= self.n_out
        return self.done


def interpolate_event(rk, event, t, h, y, K, y1, record):
    """The state at the event inside the accepted step [t, t + h], from the dense output."""
    with torch.no_grad():
        yd, Kd = y.detach(), K.detach()
        theta = event.locate(t, h, lambda th: rk.interpolate(yd, Kd, h, th))
    event.time = t + theta * h
    if record is not None:
        record[-1].outputs.append((1, theta))
    return y1 if theta >= 1.0 else rk.interpolate(y, K, h, theta)
