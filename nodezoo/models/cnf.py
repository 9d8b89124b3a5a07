"""``CNF``: continuous normalizing flows (Chen et al. 2018 §4; FFJORD, Grathwohl et al. 2019).

A vector field ``f(t, z)`` carries base samples ``z(0) ~ N(0, I)`` to data ``z(T)``; the density
follows the instantaneous change of variables ``d log p(z(t))/dt = -tr(∂f/∂z)``. ``log_prob(x)``
solves the state ``(z, Δ)`` backwards from ``(x, 0)`` at ``T`` to ``0`` with
``dΔ/dt = -tr(∂f/∂z)``; then ``Δ(0) = ∫_0^T tr dt`` and
``log p(x) = log N(z(0); 0, I) - Δ(0)``. ``sample(n)`` solves forwards from the base.

The trace is exact (one vector-Jacobian product per dimension) or Hutchinson's estimate
``εᵀ(∂f/∂z)ε`` (one product), with one noise draw per sample held fixed across the whole solve,
so the adaptive solver sees a smooth field and the adjoint/checkpoint backward passes see the
same field as the forward pass. The solve runs in an :class:`~nodezoo.nn.ODEBlock`, so the NFE
monitors in :mod:`nodezoo.callbacks` count it like any other ODE model.

Kept apart so the regularisers of Finlay et al. 2020 (RNODE) can be layered on: the products
that give the trace also give the Jacobian's squared Frobenius norm at no extra cost (exactly
from the exact trace's rows, or ``||εᵀ∂f/∂z||²`` with the same ε as Hutchinson's trace, as
RNODE does), so :func:`divergence` returns both and :class:`CNFDynamics` computes
``(f, tr, ||J||_F²)`` in one method (``field_and_divergence``) that a regularised dynamics can
extend with kinetic-energy (``||f||²``) and Frobenius channels.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ..nn import ODEBlock
from ..nn.regularisation import RegularisationConfig, steer_end_time
from ..solvers import SolverConfig
from ..zoo.pretrained import PretrainedMixin
from .schedule import ADAM_SCHEDULES, adam_with_schedule

TRACES = ("auto", "exact", "hutchinson")
NOISES = ("rademacher", "gaussian")
ACTIVATIONS = {"tanh": nn.Tanh, "softplus": nn.Softplus, "elu": nn.ELU, "swish": nn.SiLU}
# FFJORD's density-estimation tolerances (also the paper's, REFERENCE.md), adjoint gradients.
DEFAULT_SOLVER = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-5, "gradient": "adjoint"}
# ``trace="auto"`` is exact up to this many dimensions (exact costs one product per dimension).
EXACT_TRACE_MAX_DIM = 4


def nats_to_bits_per_dim(nll: torch.Tensor | float, dim: int, levels: int) -> torch.Tensor | float:
    """Bits per dimension of ``levels``-level discrete data from the NLL (nats per example) of
    its dequantised, rescaled copy ``x = (k + u) / levels`` (``k`` the integer value,
    ``u ~ U(0, 1)``). The density of ``y = k + u`` on ``[0, levels)`` is ``p_x(x) / levels^dim``,
    so ``-log p_y = nll + dim·ln(levels)``; bits per dimension divides that by ``dim·ln 2``. It
    bounds the discrete model's ``-log2 P(k) / dim`` from above (Theis et al. 2016)."""
    return (nll + dim * math.log(levels)) / (dim * math.log(2.0))


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """``log N(z; 0, I)`` summed over the last dimension."""
    return -0.5 * (z.pow(2).sum(-1) + z.shape[-1] * math.log(2 * math.pi))


def divergence(
    dz: torch.Tensor,
    z: torch.Tensor,
    noise: torch.Tensor | None,
    create_graph: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``tr(∂dz/∂z)`` and ``||∂dz/∂z||_F²`` per sample, each ``(B,)``.

    ``noise=None``: both exact, one vector-Jacobian product per dimension (row ``i`` of the
    Jacobian). Otherwise Hutchinson's estimates with ``ε = noise`` (unbiased when
    ``E[εεᵀ] = I``) from one product ``v = εᵀ∂f/∂z``: ``v·ε`` and ``||v||²``. ``dz`` must have
    been computed from ``z`` with gradients on."""
    if noise is None:
        diagonal, frobenius = [], 0.0
        for i in range(z.shape[-1]):
            (row,) = torch.autograd.grad(
                dz[:, i].sum(), z, create_graph=create_graph, retain_graph=True
            )
            diagonal.append(row[:, i])
            frobenius = frobenius + row.pow(2).sum(-1)
        return torch.stack(diagonal, -1).sum(-1), frobenius
    (vjp,) = torch.autograd.grad(dz, z, noise, create_graph=create_graph)
    return (vjp * noise).sum(-1), vjp.pow(2).sum(-1)


def draw_noise(z: torch.Tensor, kind: str) -> torch.Tensor:
    """Hutchinson noise like ``z``: Rademacher (±1, the lower-variance choice) or Gaussian."""
    if kind == "rademacher":
        return torch.randint(0, 2, z.shape, device=z.device).to(z.dtype) * 2 - 1
    if kind == "gaussian":
        return torch.randn_like(z)
    raise ValueError(f"noise={kind!r} is not one of {', '.join(NOISES)}.")


@torch.no_grad()
def evaluate_nll(
    model: CNF, batches: torch.Tensor | Iterable, trace: str = "exact"
) -> dict[str, float]:
    """The test metrics of ``model`` on ``batches`` (a tensor of points, or an iterable of
    batches such as a test DataLoader): ``test/nll`` (mean nats per example, ``trace`` exact by
    default, so no estimator noise), ``test/bits_per_dim`` when the model has
    ``quantization_levels``, and ``test/nfe_forward`` (mean per batch) — the names a run's
    ``summary.json`` uses, so a card's numbers can be recomputed and compared key by key."""
    was_training = model.training
    model.eval()
    total, count, nfe = 0.0, 0, []
    try:
        for batch in [batches] if isinstance(batches, torch.Tensor) else batches:
            x = model._batch(batch).to(next(model.parameters()))
            total += float(-model.log_prob(x, trace=trace).sum())
            count += len(x)
            nfe.append(model.ode.nfe_forward)
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate_nll got no data points.")
    metrics = {"test/nll": total / count, "test/nfe_forward": sum(nfe) / len(nfe)}
    levels = model.hparams.quantization_levels
    if levels is not None:
        metrics["test/bits_per_dim"] = nats_to_bits_per_dim(
            metrics["test/nll"], model.hparams.dim, levels
        )
    return metrics


class ConcatSquashLinear(nn.Module):
    """FFJORD's time-conditioned linear layer: ``(W x + b) · σ(a t + c) + d t``."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.linear = nn.Linear(n_in, n_out)
        self.gate = nn.Linear(1, n_out)
        self.shift = nn.Linear(1, n_out, bias=False)

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        tt = t.reshape(1, 1).to(x.dtype)
        return self.linear(x) * torch.sigmoid(self.gate(tt)) + self.shift(tt)


class ConcatSquashField(nn.Module):
    """MLP field ``dim -> hidden (x layers) -> dim`` of :class:`ConcatSquashLinear` layers, so
    every layer sees the time; smooth activations keep ``∂f/∂z`` (and the trace) smooth."""

    def __init__(self, dim: int, hidden: int = 64, layers: int = 3, activation: str = "tanh"):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation={activation!r} is not one of {', '.join(ACTIVATIONS)}.")
        if dim < 1 or hidden < 1 or layers < 1:
            raise ValueError(
                f"ConcatSquashField needs dim, hidden and layers >= 1, got {dim}, {hidden}, "
                f"{layers}."
            )
        sizes = [dim] + [hidden] * layers + [dim]
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b) for a, b in itertools.pairwise(sizes))
        self.act = ACTIVATIONS[activation]()

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        h = z
        for i, layer in enumerate(self.layers):
            h = layer(t, h)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h


class CNFDynamics(nn.Module):
    """The ODE of a CNF: ``(z, Δ) -> (f(t, z), -tr ∂f/∂z)`` for a tuple state, ``z -> f(t, z)``
    for a tensor state (sampling and trajectories need no density).

    ``noise``: the Hutchinson vectors ``(B, dim)`` for the current solve, or ``None`` for the
    exact trace. The owner sets it before each solve and leaves it until that solve's backward
    pass has run (adjoint and checkpoint gradients call the field again then)."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field
        self.noise: torch.Tensor | None = None

    def field_and_divergence(
        self, t: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(f(t, z), tr ∂f/∂z, ||∂f/∂z||_F²)`` (exact or Hutchinson's, as ``noise`` says),
        differentiable when gradients are on."""
        create_graph = torch.is_grad_enabled()
        with torch.enable_grad():
            if not z.requires_grad:
                z = z.detach().requires_grad_(True)
            dz = self.field(t, z)
            div, frobenius = divergence(dz, z, self.noise, create_graph)
        if not create_graph:
            dz, div, frobenius = dz.detach(), div.detach(), frobenius.detach()
        return dz, div, frobenius

    def forward(self, t: torch.Tensor, state):
        if isinstance(state, torch.Tensor):
            return self.field(t, state)
        z = state[0]
        dz, div, _ = self.field_and_divergence(t, z)
        return dz, -div

    def field_and_regularisers(self, t: torch.Tensor, state, terms):
        """RNODE's integrands beside the density ODE (:mod:`nodezoo.nn.regularisation`'s hook
        for tuple states): ``||f||²`` and ``||∂f/∂z||_F²`` per sample, the latter from the trace's
        own product (exact, or Hutchinson's with the trace's ``ε``)."""
        z = state[0]
        dz, div, frobenius = self.field_and_divergence(t, z)
        rates = {"kinetic": dz.pow(2).sum(-1), "jacobian": frobenius}
        return (dz, -div), {name: rates[name] for name in terms}


class CNF(PretrainedMixin, pl.LightningModule):
    """A continuous normalizing flow on ``dim``-dimensional data (see the module docstring).

    ``hidden``/``layers``/``activation``: the concat-squash field. ``t1``: integration time T.
    ``trace``: the training trace — ``hutchinson``, ``exact`` or ``auto`` (exact for
    ``dim <= 4``); ``eval_trace`` is the one validation/test use (exact by default, so reported
    NLLs carry no estimator noise). ``noise``: ``rademacher`` or ``gaussian``. ``solver``: a
    ``SolverConfig`` dict over FFJORD's dopri5 1e-5/1e-5 with adjoint gradients (``backprop`` and
    ``checkpoint`` work too). ``quantization_levels``: for dequantised discrete data (digits:
    17), also log bits per dimension (:func:`nats_to_bits_per_dim`). ``standardize``: the flow
    runs on ``u = (x - shift) / scale`` (per dimension; buffers saved with the weights, taken
    from the data module's ``standardization()`` when fitting starts), and densities include
    the exact Jacobian ``-Σ log scale``, so NLLs stay in the data's units.
    ``regularisation``: RNODE/STEER (``{"kinetic": w, "jacobian": w, "steer": b}``, see
    :mod:`nodezoo.nn.regularisation`), training only: the weighted integrals of ``||f||²`` and
    ``||∂f/∂z||_F²`` along ``log_prob``'s solve join the loss (the Frobenius term reuses the
    trace's product), and STEER draws each batch's ``T`` from ``[t1 - b, t1 + b]``.

    A zoo model (architecture ``cnf``): ``CNF.from_pretrained("cnf-checkerboard")``,
    ``save_pretrained``, ``push_to_hub``.
    """

    def __init__(
        self,
        dim: int = 2,
        hidden: int = 64,
        layers: int = 3,
        activation: str = "tanh",
        t1: float = 1.0,
        trace: str = "auto",
        eval_trace: str = "exact",
        noise: str = "rademacher",
        solver: dict[str, Any] | None = None,
        quantization_levels: int | None = None,
        standardize: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
        regularisation: dict[str, Any] | None = None,
    ):
        super().__init__()
        for name, value, choices in (
            ("trace", trace, TRACES),
            ("eval_trace", eval_trace, TRACES),
            ("noise", noise, NOISES),
            ("lr_schedule", lr_schedule, ADAM_SCHEDULES),
        ):
            if value not in choices:
                raise ValueError(f"{name}={value!r} is not one of {', '.join(choices)}.")
        if not t1 > 0:
            raise ValueError(f"t1 (the integration time T) must be positive, got {t1}.")
        if quantization_levels is not None and quantization_levels < 2:
            raise ValueError(f"quantization_levels must be >= 2, got {quantization_levels}.")
        solver_config = SolverConfig.from_dict(DEFAULT_SOLVER | (solver or {}))
        reg = RegularisationConfig.from_dict(regularisation)
        if reg.steer >= t1:
            raise ValueError(
                f"STEER's half-width steer={reg.steer} must be smaller than t1={t1}, or the "
                "integration time could reach 0."
            )
        self.save_hyperparameters()
        self.hparams.solver = solver_config.to_dict()  # fully resolved, plain data
        self.hparams.regularisation = reg.to_dict() if reg.active else None

        self.dynamics = CNFDynamics(ConcatSquashField(dim, hidden, layers, activation))
        # The block integrates RNODE's terms; STEER moves T, which log_prob passes as data.
        integrals = RegularisationConfig(kinetic=reg.kinetic, jacobian=reg.jacobian)
        self.ode = ODEBlock(
            self.dynamics, solver=solver_config, t0=0.0, t1=t1, regularisation=integrals
        )
        self.register_buffer("data_shift", torch.zeros(dim))
        self.register_buffer("data_scale", torch.ones(dim))

    # ---- model API ----
    def _exact(self, trace: str | None) -> bool:
        trace = trace or (self.hparams.trace if self.training else self.hparams.eval_trace)
        if trace not in TRACES:
            raise ValueError(f"trace={trace!r} is not one of {', '.join(TRACES)}.")
        return trace == "exact" or (trace == "auto" and self.hparams.dim <= EXACT_TRACE_MAX_DIM)

    def _times(self, start: float, end: float, like: torch.Tensor) -> torch.Tensor:
        return torch.tensor([start, end], dtype=like.dtype, device=like.device)

    def log_prob(self, x: torch.Tensor, trace: str | None = None) -> torch.Tensor:
        """``log p(x)`` per sample, ``(B,)``, in nats. ``trace`` overrides the model's choice
        (``hparams.trace`` in training mode, ``hparams.eval_trace`` in eval mode). Works under
        ``torch.inference_mode`` (Lightning's validate/test) by leaving it: the trace needs
        autograd even when nothing is trained."""
        self._check_input(x)
        if torch.is_inference_mode_enabled():
            with torch.inference_mode(False), torch.no_grad():
                return self.log_prob(x.clone(), trace)
        exact = self._exact(trace)
        self.dynamics.noise = None if exact else draw_noise(x, self.hparams.noise)
        u = (x - self.data_shift) / self.data_scale
        delta0 = x.new_zeros(x.shape[0])
        t1 = self.hparams.t1
        if self.training and self.hparams.regularisation:  # STEER: a random T in training
            t1 = steer_end_time(t1, self.hparams.regularisation["steer"])
        z, delta = self.ode((u, delta0), self._times(t1, 0.0, x))
        return standard_normal_log_prob(z[-1]) - delta[-1] - self.data_scale.log().sum()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.log_prob(x)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` samples ``(n, dim)``: base draws solved forwards from ``t = 0`` to ``T``."""
        z0 = self.base_sample(n, generator)
        return (
            self.ode(z0, self._times(0.0, self.hparams.t1, z0))[-1] * self.data_scale
            + self.data_shift
        )

    def base_sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` draws from the base ``N(0, I)`` on the model's device and dtype, made on the
        ``generator``'s device when one is given (a CPU generator gives the same draws for a
        model on any device)."""
        if n < 1:
            raise ValueError(f"Need n >= 1 samples, got {n}.")
        ref = next(self.parameters())
        device = ref.device if generator is None else generator.device
        z = torch.randn(n, self.hparams.dim, generator=generator, dtype=ref.dtype, device=device)
        return z.to(ref.device)

    @torch.no_grad()
    def trajectory(self, z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """States at every time in ``t`` (``(len(t), B, dim)``) of the points ``z`` at ``t[0]``:
        ``t`` from 0 to T moves base points to data, from T to 0 data to the base. With
        ``standardize`` the states are given and returned in data units (``shift + scale·u``)."""
        self._check_input(z)
        u = (z - self.data_shift) / self.data_scale
        return self.ode(u, t.to(z)) * self.data_scale + self.data_shift

    # ---- Lightning ----
    def setup(self, stage: str) -> None:
        """A recipe whose data disagree with the model fails here, with both values named."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        for name in ("dim", "quantization_levels"):
            if datamodule is not None and hasattr(datamodule, name):
                ours, theirs = self.hparams[name], getattr(datamodule, name)
                if ours != theirs:
                    raise ValueError(
                        f"The model has {name}={ours} but the data module gives {theirs}; "
                        f"set model.init_args.{name}: {theirs}."
                    )
        if stage == "fit" and self.hparams.standardize:
            if not hasattr(datamodule, "standardization"):
                raise ValueError(
                    "standardize=True takes the data's per-dimension mean and std from the data "
                    f"module's standardization(), which {type(datamodule).__name__} lacks; set "
                    "standardize: false."
                )
            self.set_standardization(*datamodule.standardization())

    def set_standardization(self, shift: torch.Tensor, scale: torch.Tensor) -> None:
        """Run the flow on ``(x - shift) / scale`` (per-dimension tensors, ``scale > 0``)."""
        if not self.hparams.standardize:
            raise ValueError("This model was built with standardize=False.")
        if not bool((torch.as_tensor(scale) > 0).all()):
            raise ValueError("Every standardization scale must be positive.")
        self.data_shift.copy_(torch.as_tensor(shift))
        self.data_scale.copy_(torch.as_tensor(scale))

    def _batch(self, batch) -> torch.Tensor:
        return batch[0] if isinstance(batch, (list, tuple)) else batch

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x = self._batch(batch)
        nll = -self.log_prob(x).mean()
        self.log("train/loss", nll, prog_bar=True, on_step=True, on_epoch=True, batch_size=len(x))
        reg = self.ode.regularisation_loss  # its integrals: SolverStatsMonitor's reg/*
        return nll if reg is None else nll + reg

    def _evaluate(self, batch, stage: str) -> None:
        x = self._batch(batch)
        with torch.no_grad():
            nll = -self.log_prob(x).mean()
        kwargs = dict(batch_size=len(x), sync_dist=True)
        self.log(f"{stage}/nll", nll, prog_bar=True, **kwargs)
        levels = self.hparams.quantization_levels
        if levels is not None:
            bpd = nats_to_bits_per_dim(nll, self.hparams.dim, levels)
            self.log(f"{stage}/bits_per_dim", bpd, prog_bar=True, **kwargs)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self):
        return adam_with_schedule(self)

    def _check_input(self, x: torch.Tensor) -> None:
        dim = self.hparams.dim
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError(f"Expected a floating-point tensor of shape (B, {dim}).")
        if x.dim() != 2 or x.shape[-1] != dim:
            raise ValueError(
                f"Expected points of shape (B, {dim}), got {tuple(x.shape)}; flatten images "
                "to vectors, and set dim to their length."
            )
