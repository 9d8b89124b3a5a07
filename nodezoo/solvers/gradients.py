"""Gradients of a solve: adjoint (paper §3) and checkpointed recomputation.

Both are autograd Functions over the flat initial state and the parameters; backprop needs no
code of its own (autograd records the solver's operations). Gradients with respect to the
output times are added outside, in ``odeint``, for all three modes alike.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from .errors import SolverError
from .rk import FlatField, PlainFlatField, RungeKutta, StepRecord, integrate
from .stats import SolveStats
from .step_control import Norm, StepController


@dataclass
class FlatProblem:
    """Everything a flat solve needs besides the initial state."""

    field: FlatField
    times: list[float]
    rk: RungeKutta
    rtol: Any
    atol: Any
    norm: Norm
    options: dict
    controller: StepController
    stats: SolveStats

    def solve(self, y0: torch.Tensor, record: list[StepRecord] | None = None) -> list:
        """The states at ``times``; in event mode ``[y0, y(event)]``, and ``times`` becomes
        ``[t0, event time]`` (what the backward passes integrate over)."""
        counts: dict = {}
        nfe0 = self.field.nfe
        ys = integrate(
            self.field, y0, self.times, self.rk, rtol=self.rtol, atol=self.atol, norm=self.norm,
            controller=self.controller, record=record, counts=counts, **self.options,
        )  # fmt: skip
        self.stats.nfe_forward += self.field.nfe - nfe0
        self.stats.steps_accepted += counts["accepted"]
        self.stats.steps_rejected += counts["rejected"]
        self.stats.add_newton(self.rk)
        event = self.options.get("event")
        if event is not None:
            self.times = [self.times[0], event.time]
        return ys


@dataclass
class AdjointSettings:
    """The backward solve's method and settings. ``options`` go to ``integrate`` (jump_t,
    hooks, grid ...). ``norm`` is torchdiffeq's adjoint norm, called with the tuple
    ``(t, y, adj_y, *adj_params)`` (``t`` is 0: nodezoo adds time gradients outside the
    adjoint solve); while it is ``default_norm`` the solver uses ``fast_norm`` on the flat
    augmented state instead, which computes the same value."""

    rk: RungeKutta
    rtol: float
    atol: float
    options: dict
    controller: StepController
    norm: Callable | None = None
    default_norm: Callable | None = None
    fast_norm: Callable | None = None
    y_view: Callable = lambda y: y


class AdjointSolve(torch.autograd.Function):
    """Forward without a graph; backward integrates [y, a, a_theta] from t_N back to t_0.

    The output has shape ``out_shape``; the node (``ys.grad_fn``) carries torchdiffeq's
    ``adjoint_options`` dict, whose ``"norm"`` may be replaced before the backward pass.
    """

    @staticmethod
    def forward(ctx, problem: FlatProblem, adjoint: AdjointSettings, out_shape, y0, *params):
        with torch.no_grad():
            outs = problem.solve(y0)
            # rows stacked straight into the output's shape: the output is no view
            row = (-1,) if out_shape is None else out_shape[1:]
            ys = torch.stack([y.view(row) for y in outs])
        ctx.problem, ctx.adjoint = problem, adjoint
        ctx.adjoint_options = {"norm": adjoint.norm}
        ctx.save_for_backward(ys, *params)
        return ys

    @staticmethod
    def backward(ctx, grad_ys):
        ys, *params = ctx.saved_tensors
        ys = ys.reshape(ys.shape[0], -1)
        grad_ys = grad_ys.reshape(ys.shape)
        problem: FlatProblem = ctx.problem
        adj: AdjointSettings = ctx.adjoint
        field = problem.field
        n = ys.shape[1]
        trainable = [p for p in params if p.requires_grad]
        sizes = [p.numel() for p in trainable]

        def augmented(t: float, z: torch.Tensor, toward: float | None = None) -> torch.Tensor:
            y, a = z[:n], z[n : 2 * n]
            with torch.enable_grad():
                y = y.detach().requires_grad_(True)
                fy = field(t, y, toward)
                if fy.requires_grad:
                    vjps = torch.autograd.grad(
                        fy, (y, *trainable), -a, allow_unused=True, retain_graph=False
                    )
                else:  # f depends on neither y nor the parameters
                    vjps = (None,) * (1 + len(trainable))
            parts = [fy.detach(), vjps[0] if vjps[0] is not None else torch.zeros_like(a)]
            parts += [
                torch.zeros(s, dtype=z.dtype, device=z.device) if g is None else g.reshape(-1)
                for g, s in zip(vjps[1:], sizes, strict=True)
            ]
            return torch.cat(parts)

        chosen = ctx.adjoint_options.get("norm")
        if chosen is None or chosen is adj.default_norm:
            norm = adj.fast_norm
        else:
            norm = tuple_norm(chosen, n, trainable, adj.y_view)
        field_aug = PlainFlatField(augmented, 2 * n + sum(sizes))
        nfe0 = field.nfe
        counts: dict = {}
        a = grad_ys[-1]
        a_params = ys.new_zeros(sum(sizes))
        with torch.no_grad():
            for i in range(len(problem.times) - 1, 0, -1):
                z = torch.cat([ys[i], a, a_params])
                span = [problem.times[i], problem.times[i - 1]]
                try:
                    z = integrate(
                        field_aug, z, span, adj.rk, rtol=adj.rtol, atol=adj.atol, norm=norm,
                        controller=adj.controller, counts=counts, **adj.options,
                    )[-1]  # fmt: skip
                except SolverError as err:
                    raise _in_backward_solve(err, *span) from err
                a = z[n : 2 * n] + grad_ys[i - 1]
                a_params = z[2 * n :]
        problem.stats.nfe_backward += field.nfe - nfe0
        problem.stats.steps_backward += counts.get("accepted", 0)
        problem.stats.add_newton(adj.rk)
        grads = iter(a_params.split(sizes))
        param_grads = [next(grads).view_as(p) if p.requires_grad else None for p in params]
        return (None, None, None, a, *param_grads)


def _in_backward_solve(err: SolverError, t_from: float, t_to: float) -> SolverError:
    """``err`` (same class, ``t`` and ``step_size``) with a message that says it happened in
    the adjoint's backward solve and names the usual cause and the way around it."""
    failed = copy.copy(err)
    failed.args = (
        f"In the adjoint's backward solve (from t={t_from:.6g} back to t={t_to:.6g}): {err} "
        "The adjoint method recovers the state by solving the ODE backwards in time, which "
        "blows up where the forward dynamics contract fast (stiff or strongly damped): use "
        "gradient='checkpoint' for exact gradients without that reconstruction (or backprop: "
        "odeint instead of odeint_adjoint).",
    )
    return failed


def tuple_norm(norm_fn: Callable, n: int, trainable, y_view: Callable) -> Norm:
    """A torchdiffeq-style adjoint norm ``norm_fn((t, y, adj_y, *adj_params))`` as a norm of
    the flat augmented state [y, a, a_params] (``t`` is 0: see ``AdjointSettings``)."""
    shapes = [p.shape for p in trainable]
    sizes = [p.numel() for p in trainable]

    def norm(z: torch.Tensor) -> torch.Tensor:
        views, offset = [], 2 * n
        for shape, size in zip(shapes, sizes, strict=True):
            views.append(z[offset : offset + size].view(shape))
            offset += size
        return norm_fn((z.new_zeros(()), y_view(z[:n]), y_view(z[n : 2 * n]), *views))

    return norm


class CheckpointSolve(torch.autograd.Function):
    """Forward keeps each accepted step's start; backward recomputes steps last to first."""

    @staticmethod
    def forward(ctx, problem: FlatProblem, y0, *params):
        record: list[StepRecord] = []
        with torch.no_grad():
            ys = torch.stack(problem.solve(y0, record))
        ctx.problem, ctx.record = problem, record
        ctx.save_for_backward(*params)
        return ys

    @staticmethod
    def backward(ctx, grad_ys):
        params = ctx.saved_tensors
        problem: FlatProblem = ctx.problem
        field, rk = problem.field, problem.rk
        tab = rk.tableau
        trainable = [p for p in params if p.requires_grad]
        a = torch.zeros_like(grad_ys[0])
        acc = [torch.zeros_like(p) for p in trainable]
        nfe0 = field.nfe
        for rec in reversed(ctx.record):
            dense = [(i, th) for i, th in rec.outputs if th < 1.0]
            seed = a
            for i, th in rec.outputs:
                if th >= 1.0:
                    seed = seed + grad_ys[i]
            # FSAL methods need their last stage only for dense outputs.
            last = None if (dense or not tab.fsal) else tab.stages - 2
            with torch.enable_grad():
                y = rec.y.detach().requires_grad_(True)
                f0 = field(rec.t, y, toward=rec.t + rec.h if rec.after_jump else None)
                y1, K = rk.step(
                    field, rec.t, rec.h, y, f0, True, last_stage=last, ends_on_jump=rec.ends_on_jump
                )
                outs = [y1] + [rk.interpolate(y, K, rec.h, th) for _, th in dense]
                seeds = [seed] + [grad_ys[i] for i, _ in dense]
                grads = torch.autograd.grad(outs, (y, *trainable), seeds, allow_unused=True)
            a = grads[0] if grads[0] is not None else torch.zeros_like(a)
            for j, g in enumerate(grads[1:]):
                if g is not None:
                    acc[j] += g
        a = a + grad_ys[0]
        problem.stats.nfe_backward += field.nfe - nfe0
        problem.stats.steps_backward += len(ctx.record)
        problem.stats.add_newton(rk)
        it = iter(acc)
        return (None, a, *(next(it) if p.requires_grad else None for p in params))
