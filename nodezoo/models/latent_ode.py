"""``LatentODE``: the paper's latent-ODE time-series VAE (Chen et al. 2018 §5; Rubanova 2019).

A recognition network reads the observations backwards in time and gives a Gaussian
``q(z0)`` at time ``t0``; ``z0`` is integrated by an :class:`~nodezoo.nn.ODEBlock` to every
requested time and decoded to observations. Training maximises the ELBO
``E_q[log p(x | z)] − β·KL(q(z0) || N(0, I))`` with a Gaussian likelihood.

Series in one batch may have different time points: the latents are integrated once over the
sorted union of the batch's (observed) query times and each series gathers its own times from
that grid (Rubanova et al.'s approach); one solve serves the whole batch, and the adaptive
solver's steps are set by the dynamics, not by how many output times there are.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..nn import MLPField, ODEBlock
from ..nn.recurrent import (
    BackwardEncoder,
    gaussian_log_likelihood,
    kl_standard_normal,
    merge_points,
)
from ..solvers import SolverConfig
from .forecasting import ForecastingModel

ENCODERS = ("rnn", "odernn")
# dopri5 at 1e-5/1e-6 with backprop through the solver: the paper's 1.5e-8 costs several
# times the NFE on CPU for no measurable RMSE change on spirals (see benchmarks/spirals_table2.py).
DEFAULT_SOLVER = {"method": "dopri5", "rtol": 1e-5, "atol": 1e-6, "gradient": "backprop"}


class LatentODE(ForecastingModel):
    """Latent ODE over ``obs_dim``-dimensional series (see the module docstring).

    ``encoder``: ``rnn`` (the paper's: a ``encoder_cell`` RNN of ``encoder_hidden`` units over
    ``(x, Δt)`` backwards in time) or ``odernn`` (Rubanova's ODE-RNN; ``encoder_solver`` is its
    ``SolverConfig`` dict, fixed-step rk4 by default). ``field_*``: the latent vector field, an
    autonomous MLP. ``solver``: ``SolverConfig`` dict for the latent ODE. ``obs_std``: the
    likelihood's standard deviation (learned from that start if ``learn_obs_std``).
    ``reconstruct_observed``: the likelihood covers the observed points as well as the targets
    (targets alone otherwise). ``n_samples``: posterior samples per series in the ELBO.
    ``kl_warmup_steps``: β rises linearly from 0 to 1 over that many training steps.
    """

    def __init__(
        self,
        obs_dim: int = 2,
        latent_dim: int = 4,
        encoder: str = "rnn",
        encoder_hidden: int = 25,
        encoder_cell: str = "gru",
        encoder_solver: dict[str, Any] | None = None,
        field_hidden: int = 20,
        field_layers: int = 2,
        field_activation: str = "elu",
        decoder_hidden: int = 20,
        solver: dict[str, Any] | None = None,
        t0: float = 0.0,
        obs_std: float = 0.3,
        learn_obs_std: bool = False,
        reconstruct_observed: bool = True,
        n_samples: int = 1,
        kl_warmup_steps: int = 0,
        lr: float = 0.01,
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
    ):
        super().__init__()
        if encoder not in ENCODERS:
            raise ValueError(f"encoder={encoder!r} is not one of {', '.join(ENCODERS)}.")
        if obs_std <= 0 or n_samples < 1 or kl_warmup_steps < 0:
            raise ValueError(
                f"Need obs_std > 0, n_samples >= 1 and kl_warmup_steps >= 0; got {obs_std}, "
                f"{n_samples}, {kl_warmup_steps}."
            )
        solver_config = SolverConfig.from_dict(DEFAULT_SOLVER | (solver or {}))
        self.save_hyperparameters()
        self.hparams.solver = solver_config.to_dict()  # fully resolved, plain data

        self.encoder = BackwardEncoder(
            obs_dim,
            latent_dim,
            encoder_hidden,
            encoder_cell,
            ode_solver=(encoder_solver or {}) if encoder == "odernn" else None,
        )
        if encoder == "odernn":  # fully resolved, like solver (the cell's rk4 default filled in)
            self.hparams.encoder_solver = self.encoder_solver.to_dict()
        field = MLPField(latent_dim, field_hidden, field_layers, activation=field_activation)
        self.ode = ODEBlock(field, solver=solver_config, t0=t0)
        self.decoder = nn.Sequential(
            nn.Linear(latent_dim, decoder_hidden), nn.ReLU(), nn.Linear(decoder_hidden, obs_dim)
        )
        log_std = torch.tensor(math.log(obs_std))
        if learn_obs_std:
            self.log_obs_std = nn.Parameter(log_std)
        else:
            self.register_buffer("log_obs_std", log_std)

    # ---- model API ----
    @property
    def solver(self) -> SolverConfig:
        """The latent ODE's solver; its block is the one source of truth (config.json and
        checkpoints record this, whoever changed it). The ODE-RNN encoder has its own."""
        return self.ode.solver

    @solver.setter
    def solver(self, value: SolverConfig | dict) -> None:
        self.ode.solver = SolverConfig.from_dict(value)
        self.hparams.solver = self.ode.solver.to_dict()

    @property
    def encoder_solver(self) -> SolverConfig | None:
        """The ODE-RNN encoder's solver (None for the RNN encoder); its block is the one source
        of truth, as for :attr:`solver`."""
        return None if self.encoder.odernn is None else self.encoder.odernn.ode.solver

    @encoder_solver.setter
    def encoder_solver(self, value: SolverConfig | dict) -> None:
        if self.encoder.odernn is None:
            raise ValueError(
                "This latent ODE's encoder is an RNN (encoder='rnn'): it has no solver to set; "
                "build one with encoder='odernn' for an ODE-RNN encoder."
            )
        self.encoder.odernn.ode.solver = SolverConfig.from_dict(value)
        self.hparams.encoder_solver = self.encoder.odernn.ode.solver.to_dict()

    def encode(self, obs_t, obs_x, obs_mask=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and log-variance of ``q(z0)``, each ``(B, latent_dim)``."""
        self._check_values(obs_x)
        return self.encoder(obs_t, obs_x, obs_mask, t0=self.hparams.t0)

    def latents_at(
        self, z0: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``z(t)`` for initial states ``z0 (N, L)`` at times ``t (N, T)`` or shared ``(T,)``:
        one solve over the sorted union of the (unmasked) times, then a gather. Returns
        ``(N, T, L)``; masked times get ``z0``."""
        t0 = self.hparams.t0
        shared = t.dim() == 1
        tt = t.unsqueeze(0).expand(z0.shape[0], -1) if shared else t
        valid = torch.ones_like(tt, dtype=torch.bool) if mask is None else mask
        tt = torch.where(valid, tt.to(z0.dtype), torch.full_like(tt, t0, dtype=z0.dtype))
        if bool((tt < t0).any()):
            raise ValueError(f"Query times must be >= t0={t0}; shift the times or set t0.")
        if tt.numel() == 0:
            return z0.new_zeros(*tt.shape, z0.shape[-1])
        grid = torch.unique(tt)  # sorted
        if grid[0] > t0:
            grid = torch.cat([grid.new_tensor([t0]), grid])
        zs = self.ode(z0, grid) if grid.numel() > 1 else z0.unsqueeze(0)  # (G, N, L)
        index = torch.searchsorted(grid, tt.contiguous())  # (N, T)
        zs = zs.transpose(0, 1)  # (N, G, L)
        return zs.gather(1, index.unsqueeze(-1).expand(-1, -1, zs.shape[-1]))

    def decode(self, z0: torch.Tensor, t: torch.Tensor, mask: torch.Tensor | None = None):
        """Observation means at times ``t`` for initial latents ``z0 (..., N, L)``: ``(..., N, T,
        D)``. Leading sample dimensions share one solve."""
        lead = z0.shape[:-2]
        flat = z0.reshape(-1, z0.shape[-1])
        reps = flat.shape[0] // z0.shape[-2]
        if t.dim() == 2:
            t = t.repeat(reps, 1)
            mask = None if mask is None else mask.repeat(reps, 1)
        x = self.decoder(self.latents_at(flat, t, mask))
        return x.reshape(*lead, z0.shape[-2], *x.shape[1:])

    def sample_posterior(self, mean: torch.Tensor, logvar: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` reparameterised samples of ``z0``: ``(n, B, L)``."""
        eps = torch.randn((n, *mean.shape), dtype=mean.dtype, device=mean.device)
        return mean + torch.exp(0.5 * logvar) * eps

    @torch.no_grad()
    def predict(self, obs_t, obs_x, query_t, n_samples: int = 1, obs_mask=None):
        """``(mean, samples)`` at ``query_t`` ((B, Tq) or shared (Tq,)): ``mean`` decodes the
        posterior mean of ``z0`` (B, Tq, D); ``samples`` decode ``n_samples`` posterior draws
        (n_samples, B, Tq, D)."""
        mean_z, logvar = self.encode(obs_t, obs_x, obs_mask)
        z0 = torch.cat([mean_z.unsqueeze(0), self.sample_posterior(mean_z, logvar, n_samples)])
        x = self.decode(z0, query_t)
        return x[0], x[1:]

    @torch.no_grad()
    def sample_prior(self, query_t: torch.Tensor, n: int) -> torch.Tensor:
        """``n`` series from the prior ``z0 ~ N(0, I)`` at shared times ``query_t``: (n, Tq, D)."""
        z0 = torch.randn(n, self.hparams.latent_dim, device=self.log_obs_std.device)
        return self.decode(z0, query_t.to(z0))

    # ---- training objective ----
    def kl_weight(self) -> float:
        warmup = self.hparams.kl_warmup_steps
        if warmup == 0 or not self.training:
            return 1.0
        return min(1.0, self.global_step / warmup)

    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Negative ELBO per series (mean over the batch) and its parts."""
        mean, logvar = self.encode(batch["obs_t"], batch["obs_x"], batch["obs_mask"])
        parts = ("obs", "target") if self.hparams.reconstruct_observed else ("target",)
        t, x, mask = merge_points(batch, parts)
        z0 = self.sample_posterior(mean, logvar, self.hparams.n_samples)
        x_hat = self.decode(z0, t, mask.any(-1))  # (S, B, T, D)
        loglik = gaussian_log_likelihood(x, x_hat, self.log_obs_std.exp(), mask).mean(0)
        kl = kl_standard_normal(mean, logvar)
        beta = self.kl_weight()
        loss = -(loglik - beta * kl).mean()
        n_values = mask.sum().clamp(min=1)
        logs = {
            "kl": kl.mean(),
            "nll_per_value": -loglik.sum() / n_values,
            "kl_weight": torch.tensor(beta),
            "nfe": torch.tensor(float(self.ode.nfe_forward)),
        }
        return loss, logs

    def _check_values(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise TypeError("Observations must be a floating-point tensor of shape (B, T, D).")
        if x.dim() != 3 or x.shape[-1] != self.hparams.obs_dim:
            raise ValueError(
                f"Observations must have shape (B, T, {self.hparams.obs_dim}), got "
                f"{tuple(x.shape)}; set obs_dim to the number of value columns."
            )
