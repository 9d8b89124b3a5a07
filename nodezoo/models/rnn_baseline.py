"""``RNNBaseline``: the paper's recurrent baseline for irregular time series.

A GRU (25 units in the paper) reads the series forwards; each step's input is the value, its
mask and — with ``time_gaps`` — the time until the point it must predict next, and its output
is a Gaussian over that next value. Training is one-step-ahead Gaussian NLL with teacher
forcing on the observed points followed by the targets. Extrapolation, as in the paper, feeds
the model's own mean forward with the known gap to each target time, so errors compound.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..nn.recurrent import (
    broadcast_times,
    gaussian_log_likelihood,
    make_rnn,
    merge_points,
    run_padded,
    value_mask,
)
from .forecasting import ForecastingModel


class RNNBaseline(ForecastingModel):
    """Autoregressive Gaussian RNN. ``cell``: ``gru`` | ``rnn``; ``time_gaps``: feed the gap to
    the next point (the paper's "RNN with Δt" variant; without it the model cannot know how far
    ahead it predicts); ``min_std``: floor of the predicted standard deviation."""

    def __init__(
        self,
        obs_dim: int = 2,
        hidden: int = 25,
        cell: str = "gru",
        time_gaps: bool = True,
        min_std: float = 1e-3,
        lr: float = 0.01,
        weight_decay: float = 0.0,
        lr_schedule: str = "constant",
    ):
        super().__init__()
        if obs_dim < 1 or hidden < 1 or min_std <= 0:
            raise ValueError(
                f"Need obs_dim >= 1, hidden >= 1 and min_std > 0; got {obs_dim}, {hidden}, "
                f"{min_std}."
            )
        self.save_hyperparameters()
        self.rnn = make_rnn(cell, 2 * obs_dim + int(time_gaps), hidden)
        self.head = nn.Linear(hidden, 2 * obs_dim)

    def _inputs(self, x, mask, gap_to_next) -> torch.Tensor:
        parts = [torch.where(mask, x, 0.0), mask.to(x.dtype)]
        if self.hparams.time_gaps:
            parts.append(gap_to_next.unsqueeze(-1))
        return torch.cat(parts, -1)

    def _gaussian(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw_std = self.head(h).chunk(2, dim=-1)
        return mean, F.softplus(raw_std) + self.hparams.min_std

    # ---- model API ----
    def loss(self, batch: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One-step-ahead Gaussian NLL per series over observed points then targets."""
        t, x, mask = merge_points(batch)  # sorted, unobserved steps last
        step_mask = mask.any(-1)
        gap_to_next = torch.cat([t[:, 1:] - t[:, :-1], torch.zeros_like(t[:, :1])], 1)
        states, _ = run_padded(self.rnn, self._inputs(x, mask, gap_to_next), step_mask.sum(1))
        mean, std = self._gaussian(states[:, :-1])
        predicted = mask[:, 1:] & step_mask[:, :-1, None]
        loglik = gaussian_log_likelihood(x[:, 1:], mean, std, predicted)
        n_values = predicted.sum().clamp(min=1)
        return -loglik.mean(), {"nll_per_value": -loglik.sum() / n_values}

    @torch.no_grad()
    def predict(self, obs_t, obs_x, query_t, n_samples: int = 1, obs_mask=None):
        """Extrapolate to ``query_t`` ((B, Tq) or shared (Tq,), each after the series' last
        observation). ``mean`` feeds the predicted means forward (the paper's protocol);
        ``samples`` are ``n_samples`` rollouts that feed sampled values (n_samples, B, Tq, D)."""
        batch = {"obs_t": obs_t, "obs_x": obs_x, "obs_mask": value_mask(obs_mask, obs_x)}
        t, x, mask = merge_points(batch, ("obs",))
        step_mask = mask.any(-1)
        query = broadcast_times(query_t, x.new_empty(x.shape[0], query_t.shape[-1], 0))
        last = torch.where(step_mask, t, -math.inf).max(1).values
        if bool((query[:, 0] < last).any()):
            raise ValueError("RNNBaseline extrapolates: query times must follow the observations.")
        following = torch.cat([t[:, 1:], query[:, :1]], 1)
        next_observed = torch.cat([step_mask[:, 1:], torch.zeros_like(step_mask[:, :1])], 1)
        next_t = torch.where(next_observed, following, query[:, :1].expand_as(t))
        _, h = run_padded(self.rnn, self._inputs(x, mask, next_t - t), step_mask.sum(1))
        mean = self._rollout(h, query, sample=False)
        if n_samples == 0:
            return mean, mean.new_empty(0, *mean.shape)
        rep = h.repeat(n_samples, 1)
        samples = self._rollout(rep, query.repeat(n_samples, 1), sample=True)
        return mean, samples.reshape(n_samples, *mean.shape)

    def _rollout(self, h: torch.Tensor, query: torch.Tensor, sample: bool) -> torch.Tensor:
        gaps = torch.cat([query[:, 1:] - query[:, :-1], torch.zeros_like(query[:, :1])], 1)
        outputs = []
        for j in range(query.shape[1]):
            mean, std = self._gaussian(h)
            value = mean + std * torch.randn_like(std) if sample else mean
            outputs.append(value)
            if j + 1 < query.shape[1]:
                ones = torch.ones_like(value, dtype=torch.bool)
                step = self._inputs(value, ones, gaps[:, j]).unsqueeze(1)
                h = self.rnn(step, h.unsqueeze(0))[1][0]
        return torch.stack(outputs, 1)
