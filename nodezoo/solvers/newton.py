"""Newton's method for implicit stage equations: Jacobians, reused LU factors, counts.

Implicit methods solve ``G(Z) = 0`` for their stage increments ``Z`` (``s x n``) by simplified
Newton iterations: the iteration matrix ``M = I - h (A ⊗ J)`` uses one Jacobian ``J = df/dy``
for every stage and is LU-factorised once, then reused across iterations and steps. ``J`` is
recomputed when convergence slows (a contraction rate above ``refresh_rate``) or Newton fails;
``M`` is refactorised when ``h`` or ``J`` changes.

``J`` comes from autograd: one evaluation of ``f`` and one batched vector-Jacobian product
(``is_grads_batched``, a vmap over the rows of the identity), so the state may be a whole batch
of problems. A field that autograd cannot see through (the adjoint's augmented system, which
detaches its outputs) gets forward differences instead; simplified Newton needs only an
approximate Jacobian.

A batch of independent problems has a block-diagonal Jacobian: with ``block_size = k`` (the
flat state is ``B`` consecutive blocks of ``k`` entries) ``J`` is kept as ``B x k x k``, costs
``k`` vector-Jacobian products instead of ``B k``, and ``M`` is factorised block by block
(batched LU) instead of as one dense ``(s B k)^2`` matrix. Without it, ``B = 1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import NewtonFailed, SolverConfigError

__all__ = ["IterationMatrix", "NewtonCounts", "NewtonFailed", "jacobian"]


@dataclass
class NewtonCounts:
    """What the implicit solves cost besides function evaluations (copied into SolveStats)."""

    newton_iterations: int = 0
    jacobian_evaluations: int = 0
    lu_decompositions: int = 0
    newton_failures: int = 0


def check_block_size(block_size: int | None, n: int) -> int:
    """The block size for a flat state of ``n`` entries (``n`` itself: one dense block)."""
    if block_size is None:
        return n
    if int(block_size) < 1 or n % int(block_size):
        raise SolverConfigError(
            f"block_size={block_size} must divide the state's {n} entries: it is the size of "
            "one of the independent problems batched along the state's first dimension "
            "(y0[0].numel())."
        )
    return int(block_size)


def jacobian(
    f, t: float, y: torch.Tensor, toward: float | None = None, block_size: int | None = None
) -> torch.Tensor:
    """``df/dy`` at (t, y) as ``B x k x k`` diagonal blocks (``k = block_size``, default the
    whole state: ``1 x n x n``), no graph kept. Blocks are only correct when the problems in
    them are independent: the entries of the off-diagonal blocks are summed into them."""
    n = y.shape[0]
    k = check_block_size(block_size, n)
    eye = torch.eye(k, dtype=y.dtype, device=y.device).repeat(1, n // k)  # e_i in every block
    with torch.enable_grad():
        yv = y.detach().requires_grad_(True)
        out = f(t, yv, toward)
        if out.requires_grad:
            try:
                # the graph is kept for the fallback: a batched pass that fails has freed it
                (rows,) = torch.autograd.grad(
                    out, yv, eye, is_grads_batched=True, retain_graph=True
                )
            except RuntimeError:  # an operation without a batching rule: one row at a time
                rows = torch.stack(
                    [torch.autograd.grad(out, yv, e, retain_graph=True)[0] for e in eye]
                )
            # rows[i, b k + j] = d out_{b k + i} / d y_{b k + j}
            return rows.detach().view(k, n // k, k).transpose(0, 1).contiguous()
    with torch.no_grad():
        return _forward_differences(f, t, y.detach(), out.detach(), toward, k)


def _forward_differences(f, t, y, fy, toward, k):
    """Column j of every block at once: perturb entry j of each block together."""
    eps = torch.finfo(y.dtype).eps ** 0.5
    blocks = y.view(-1, k)
    cols = []
    for j in range(k):
        dy = eps * blocks[:, j].abs().clamp_min(1.0)
        yj = blocks.clone()
        yj[:, j] += dy
        cols.append((f(t, yj.view(-1), toward) - fy).view(-1, k) / dy[:, None])
    return torch.stack(cols, dim=2)  # [b, i, j] = d f_{b k + i} / d y_{b k + j}


def to_blocks(Z: torch.Tensor, k: int) -> torch.Tensor:
    """``(m, B k)`` stage rows as ``(B, m k, 1)`` right-hand sides of the block systems."""
    m = Z.shape[0]
    return Z.view(m, -1, k).transpose(0, 1).reshape(-1, m * k, 1)


def from_blocks(X: torch.Tensor, m: int, k: int) -> torch.Tensor:
    return X.view(-1, m, k).transpose(0, 1).reshape(m, -1)


def stage_matrix(A: torch.Tensor, h: float, Js: torch.Tensor) -> torch.Tensor:
    """``I - h [a_ij J_j]`` per block: ``Js`` is ``(m, B, k, k)`` (one Jacobian per stage) or
    ``(B, k, k)`` (one for all), the result ``(B, m k, m k)``."""
    if Js.dim() == 3:
        Js = Js.expand(A.shape[0], *Js.shape)
    m, B, k = Js.shape[0], Js.shape[1], Js.shape[2]
    # [b, i, p, j, q] = -h a_ij J_j[b, p, q]
    M = (-h) * A[None, :, None, :, None] * Js.permute(1, 0, 2, 3)[:, None, :, :, :].transpose(2, 3)
    M = M.reshape(B, m * k, m * k)
    M.diagonal(dim1=1, dim2=2).add_(1.0)
    return M


class IterationMatrix:
    """``M = I - h (A ⊗ J)`` for the implicit stages, LU-factorised, with its reuse policy.

    ``shares`` another matrix's Jacobian (an error filter ``I - h gamma J`` next to the stage
    matrix): it refactorises when that Jacobian changes."""

    def __init__(
        self,
        A: torch.Tensor,
        counts: NewtonCounts,
        block_size: int | None = None,
        shares: IterationMatrix | None = None,
    ):
        self.A = A  # (m, m): the coefficients among the implicit stages
        self.counts = counts
        self.block_size = block_size
        self.shares = shares
        self._J: torch.Tensor | None = None
        self.version = 0
        self.lu = None
        self.h: float | None = None
        self._factored_version = -1

    @property
    def J(self) -> torch.Tensor | None:
        return self.shares.J if self.shares is not None else self._J

    def _version(self) -> int:
        return self.shares.version if self.shares is not None else self.version

    def update_jacobian(self, f, t: float, y: torch.Tensor, toward: float | None = None) -> None:
        self._J = jacobian(f, t, y, toward, self.block_size)
        self.counts.jacobian_evaluations += 1
        self.version += 1

    def solve(self, h: float, rhs: torch.Tensor) -> torch.Tensor:
        """``M^{-1} rhs`` for ``rhs`` of shape ``(m, n)``, factorising M if h or J changed."""
        k = self.J.shape[-1]
        # a step size changed by roundoff only (t_next - t on a grid) keeps the factors
        if self._factored_version != self._version() or abs(h - self.h) > 1e-9 * abs(h):
            # lu_factor raises a plain RuntimeError on a zero pivot; a singular matrix is
            # reported as LinAlgError, which solve_stages counts as a Newton failure
            lu, pivots, info = torch.linalg.lu_factor_ex(stage_matrix(self.A, h, self.J))
            if bool((info != 0).any()):
                raise torch.linalg.LinAlgError(
                    f"the Newton iteration matrix is singular at step size {h:.3g}"
                )
            self.lu = (lu, pivots)
            self.h = h
            self._factored_version = self._version()
            self.counts.lu_decompositions += 1
        m = self.A.shape[0]
        return from_blocks(torch.linalg.lu_solve(*self.lu, to_blocks(rhs, k)), m, k)
