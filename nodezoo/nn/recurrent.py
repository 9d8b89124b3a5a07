"""Sequence building blocks for irregularly sampled time series.

* The batch format every time-series model and data module shares (``BATCH_KEYS``,
  :func:`check_batch`): a plain dict of padded tensors plus masks, so Lightning moves it to the
  device and YAML/Hub configs never see a custom type.
* The one masked Gaussian likelihood / KL / RMSE implementation that the latent ODE and the RNN
  baselines both use, so their numbers are comparable.
* :class:`BackwardEncoder`: reads observations backwards in time into a Gaussian over the initial
  latent state. With ``ode_solver`` it is Rubanova et al.'s ODE-RNN (the hidden state follows an
  ODE between observations, :class:`ODERNNCell`); without, it is the paper's RNN over ``(x, Δt)``.

Batch format (``B`` series, ``T`` padded steps, ``D`` values per step)::

    obs_t (B, T) or shared (T,)    obs_x (B, T, D)    obs_mask (B, T) or (B, T, D), bool
    target_t, target_x, target_mask: the same, for the points to predict

Within each series the observed steps are sorted by time; padding may sit anywhere (it is
masked). Masked values are never read (they may be NaN).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .fields import MLPField
from .ode_block import ODEBlock

BATCH_KEYS = ("obs_t", "obs_x", "obs_mask", "target_t", "target_x", "target_mask")
CELLS = ("gru", "rnn")
LOG_2PI = math.log(2 * math.pi)


# ---- batch format ----
def check_batch(batch: dict, keys: tuple[str, ...] = BATCH_KEYS) -> None:
    """Raise a clear error if ``batch`` is not the shared time-series batch format."""
    if not isinstance(batch, dict):
        raise TypeError(
            f"Time-series models take a dict batch with keys {', '.join(BATCH_KEYS)}; got "
            f"{type(batch).__name__}. Use nodezoo.data.timeseries.collate_series to build one."
        )
    missing = [k for k in keys if k not in batch]
    if missing:
        raise ValueError(
            f"The batch lacks {', '.join(missing)}; the format is {', '.join(BATCH_KEYS)} "
            "(see nodezoo.nn.recurrent)."
        )
    for prefix in ("obs", "target"):
        if f"{prefix}_x" in batch:
            broadcast_times(batch[f"{prefix}_t"], batch[f"{prefix}_x"])
            value_mask(batch[f"{prefix}_mask"], batch[f"{prefix}_x"])


def broadcast_times(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Times as ``(B, T)``: a shared ``(T,)`` grid is expanded to every series."""
    if x.dim() != 3:
        raise ValueError(f"Values must have shape (B, T, D), got {tuple(x.shape)}.")
    if t.dim() == 1:
        t = t.unsqueeze(0).expand(x.shape[0], -1)
    if t.shape != x.shape[:2]:
        raise ValueError(
            f"Times of shape {tuple(t.shape)} do not match values of shape {tuple(x.shape)}; "
            "give (B, T) or a shared (T,)."
        )
    return t.to(x.dtype)


def value_mask(mask: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    """A per-value boolean mask ``(B, T, D)`` from a per-step ``(B, T)`` or per-value mask."""
    if mask is None:
        return torch.ones_like(x, dtype=torch.bool)
    if mask.shape == x.shape[:2]:
        mask = mask.unsqueeze(-1).expand_as(x)
    if mask.shape != x.shape:
        raise ValueError(
            f"A mask of shape {tuple(mask.shape)} does not fit values of shape "
            f"{tuple(x.shape)}; give (B, T) or (B, T, D)."
        )
    return mask.bool()


# ---- likelihood and metrics (one implementation for every sequence model) ----
def gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor | float, mask: torch.Tensor
) -> torch.Tensor:
    """``log N(x | mean, std²)`` summed over the observed values of each series: shape ``x.shape
    [:-2]``. Masked values contribute nothing, and NaNs there cannot leak into gradients."""
    mask = value_mask(mask, x) if x.dim() == 3 else mask.bool()
    std = torch.as_tensor(std, dtype=mean.dtype, device=mean.device)
    x = torch.where(mask, x, mean.detach())  # masked entries: zero residual, finite gradient
    logp = -0.5 * ((x - mean) / std) ** 2 - torch.log(std) - 0.5 * LOG_2PI
    return torch.where(mask, logp, torch.zeros_like(logp)).sum(dim=(-2, -1))


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, I))`` summed over the last dimension."""
    return 0.5 * (logvar.exp() + mean**2 - 1.0 - logvar).sum(-1)


def masked_squared_error(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of squared errors over observed values and how many there were (to pool batches)."""
    mask = value_mask(mask, target)
    diff = torch.where(mask, pred - torch.where(mask, target, pred.detach()), 0.0)
    return (diff**2).sum(), mask.sum()


def masked_rmse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Root mean squared error over all observed values (the paper's predictive RMSE)."""
    sse, count = masked_squared_error(pred, target, mask)
    if count == 0:
        raise ValueError("masked_rmse got no observed values; the mask is all False.")
    return torch.sqrt(sse / count)


def time_since_previous(t: torch.Tensor, step_mask: torch.Tensor, t0: float) -> torch.Tensor:
    """For each observed step, the time since the previous observed step of its series (since
    ``t0`` for the first). Raises if observed times go backwards or start before ``t0``."""
    neg_inf = torch.full_like(t, -math.inf)
    seen = torch.where(step_mask, t, neg_inf)
    if bool((step_mask & (t < t0)).any()):
        raise ValueError(f"Observation times must be >= t0={t0}; shift the times or set t0.")
    running = torch.cummax(seen, dim=1).values
    if bool((step_mask & (t < running)).any()):
        raise ValueError("Observed times must be sorted (ascending) within each series.")
    previous = torch.cat([torch.full_like(t[:, :1], -math.inf), running[:, :-1]], dim=1)
    previous = torch.where(torch.isinf(previous), torch.full_like(t, t0), previous)
    return torch.where(step_mask, t - previous, torch.zeros_like(t))


def merge_points(batch: dict, parts: tuple[str, ...] = ("obs", "target")) -> tuple:
    """``(t, x, mask)`` of the given parts joined along time and sorted within each series, with
    unobserved steps moved to the end (what a model that reads a whole sequence in order needs).
    ``mask`` is per value, ``(B, T, D)``."""
    ts, xs, masks = [], [], []
    for part in parts:
        x = batch[f"{part}_x"]
        ts.append(broadcast_times(batch[f"{part}_t"], x))
        xs.append(x)
        masks.append(value_mask(batch[f"{part}_mask"], x))
    t, x, mask = torch.cat(ts, 1), torch.cat(xs, 1), torch.cat(masks, 1)
    step_mask = mask.any(-1)
    key = torch.where(step_mask, t, torch.full_like(t, math.inf))
    order = torch.argsort(key, dim=1, stable=True)
    gather = order.unsqueeze(-1).expand_as(x)
    t, x, mask = t.gather(1, order), x.gather(1, gather), mask.gather(1, gather)
    # Padding gets the series' last observed time: finite, zero gaps, nothing to leak.
    step_mask = mask.any(-1)
    last = torch.where(step_mask, t, torch.full_like(t, -math.inf)).max(1, keepdim=True).values
    last = torch.where(torch.isinf(last), torch.zeros_like(last), last)
    t = torch.where(step_mask, t, last)
    return t, x, mask


# ---- recurrent cells and encoders ----
def make_cell(cell: str, input_size: int, hidden_size: int) -> nn.Module:
    """A recurrent cell called as ``cell(input, hidden)``: ``gru`` or a plain tanh ``rnn``."""
    if cell not in CELLS:
        raise ValueError(f"cell={cell!r} is not one of {', '.join(CELLS)}.")
    cls = nn.GRUCell if cell == "gru" else nn.RNNCell
    return cls(input_size, hidden_size)


def make_rnn(cell: str, input_size: int, hidden_size: int) -> nn.Module:
    """A batch-first one-layer ``nn.GRU`` / ``nn.RNN``: whole sequences run in one C++ loop."""
    if cell not in CELLS:
        raise ValueError(f"cell={cell!r} is not one of {', '.join(CELLS)}.")
    cls = nn.GRU if cell == "gru" else nn.RNN
    return cls(input_size, hidden_size, batch_first=True)


def run_padded(
    rnn: nn.Module, inputs: torch.Tensor, lengths: torch.Tensor, h0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run a one-layer batch-first ``rnn`` over series whose real steps come first (padding
    last): outputs ``(B, T, H)`` (meaningless after each series' end) and the state after its
    last real step ``(B, H)`` (``h0``, or zeros, for empty series). Padding after the end cannot
    change earlier outputs, so no packing is needed (packed sequences are ~3x slower on CPU)."""
    h0 = inputs.new_zeros(inputs.shape[0], rnn.hidden_size) if h0 is None else h0
    out, _ = rnn(inputs, h0.unsqueeze(0).contiguous())
    last = (lengths - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
    return out, torch.where((lengths == 0).unsqueeze(-1), h0, out.gather(1, last).squeeze(1))


class ScaledTimeField(nn.Module):
    """``dh/ds = gap · f(h)`` for ``s`` in [0, 1]: one batched solve moves every series by its
    own time gap (gaps may differ per series, and a zero gap leaves a series unchanged).

    The state is ``[h, gap]`` (``(B, H + 1)``) with ``d gap/ds = 0``: the gap travels with the
    state instead of living on the module, so adjoint and checkpoint gradients, whose backward
    solves run after the forward pass has moved on, still see each solve's own gap."""

    def __init__(self, field: nn.Module):
        super().__init__()
        self.field = field

    def forward(self, s: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        h, gap = state[..., :-1], state[..., -1:]
        return torch.cat([gap * self.field(s, h), torch.zeros_like(gap)], dim=-1)


class ODERNNCell(nn.Module):
    """Rubanova et al.'s ODE-RNN step: ``h' = ODESolve(f, h, gap)`` then ``h = GRUCell(x, h')``.

    ``evolve(h, gap)`` integrates the hidden state over a per-series time ``gap`` (negative gaps
    run backwards in time). It uses an :class:`ODEBlock` that sums its statistics over gaps
    until ``reset_stats()`` (the encoder calls it once per sequence), so NFE callbacks see the
    whole sequence's cost, forward and backward.
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        field_hidden: int | None = None,
        solver: dict | None = None,
        cell: str = "gru",
    ):
        super().__init__()
        field = MLPField(hidden_size, field_hidden or hidden_size, layers=1, activation="tanh")
        solver = {"method": "rk4", "step_size": 0.5, "gradient": "backprop"} | (solver or {})
        self.ode = ODEBlock(
            ScaledTimeField(field), solver=solver, t0=0.0, t1=1.0, accumulate_stats=True
        )
        self.cell = make_cell(cell, input_size, hidden_size)

    def evolve(self, h: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        if not bool((gap != 0).any()):
            return h
        state = torch.cat([h, gap.unsqueeze(-1).to(h.dtype)], dim=-1)
        return self.ode(state)[..., :-1]

    def forward(self, x: torch.Tensor, h: torch.Tensor, gap: torch.Tensor) -> torch.Tensor:
        return self.cell(x, self.evolve(h, gap))


class BackwardEncoder(nn.Module):
    """Recognition network: reads a series backwards in time and returns ``(mean, logvar)`` of
    ``q(z_{t0})``.

    Each step's input is ``[x·m, m, t_i − t_prev]`` (values with missing ones zeroed, the
    per-value mask, and the gap to the previous observation or to ``t0``), so masked values and
    irregular gaps are both visible. Padded steps leave the hidden state unchanged. With
    ``ode_solver`` (a ``SolverConfig`` dict, or ``{}`` for the default fixed-step rk4) the hidden
    state also follows an ODE between observations and back to ``t0`` (ODE-RNN).
    """

    def __init__(
        self,
        obs_dim: int,
        latent_dim: int,
        hidden: int = 25,
        cell: str = "gru",
        ode_solver: dict | None = None,
        ode_hidden: int | None = None,
    ):
        super().__init__()
        if min(obs_dim, latent_dim, hidden) < 1:
            raise ValueError(
                f"obs_dim, latent_dim and hidden must be >= 1, got {obs_dim}, {latent_dim}, "
                f"{hidden}."
            )
        input_size = 2 * obs_dim + 1
        if ode_solver is None:
            self.odernn = None
            self.rnn = make_rnn(cell, input_size, hidden)
        else:
            self.odernn = ODERNNCell(input_size, hidden, ode_hidden, ode_solver, cell)
        self.hidden = hidden
        self.to_posterior = nn.Linear(hidden, 2 * latent_dim)

    def forward(
        self, t: torch.Tensor, x: torch.Tensor, mask: torch.Tensor | None = None, t0: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        batch = {"obs_t": t, "obs_x": x, "obs_mask": value_mask(mask, x)}
        t, x, mask = merge_points(batch, ("obs",))  # sorted, padding last
        step_mask = mask.any(-1)
        gaps = time_since_previous(t, step_mask, t0)
        inputs = torch.cat([torch.where(mask, x, 0.0), mask.to(x.dtype), gaps.unsqueeze(-1)], -1)
        if self.odernn is not None:
            h = self._read_odernn(inputs, gaps, step_mask)
        else:
            h = self._read_rnn(inputs, step_mask)
        mean, logvar = self.to_posterior(h).chunk(2, dim=-1)
        return mean, logvar

    def _read_rnn(self, inputs: torch.Tensor, step_mask: torch.Tensor) -> torch.Tensor:
        """Each series' observed steps reversed (so backwards in time), then one packed run."""
        lengths = step_mask.sum(1)
        steps = torch.arange(inputs.shape[1], device=inputs.device)
        reverse = (lengths.unsqueeze(1) - 1 - steps).clamp(min=0)
        reversed_inputs = inputs.gather(1, reverse.unsqueeze(-1).expand_as(inputs))
        return run_padded(self.rnn, reversed_inputs, lengths)[1]

    def _read_odernn(self, inputs, gaps, step_mask) -> torch.Tensor:
        self.odernn.ode.reset_stats()
        h = inputs.new_zeros(inputs.shape[0], self.hidden)
        pending = torch.zeros_like(gaps[:, 0])  # gap from the observation read last to this one
        for i in reversed(range(inputs.shape[1])):
            observed = step_mask[:, i]
            h = self.odernn.evolve(h, -torch.where(observed, pending, 0.0))
            h = torch.where(observed.unsqueeze(-1), self.odernn.cell(inputs[:, i], h), h)
            pending = torch.where(observed, gaps[:, i], pending)
        return self.odernn.evolve(h, -pending)  # back from the first observation to t0
