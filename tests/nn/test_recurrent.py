"""Sequence building blocks: likelihood/KL/RMSE against closed forms, masks, encoders."""

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from nodezoo.nn.recurrent import (
    BackwardEncoder,
    ODERNNCell,
    check_batch,
    gaussian_log_likelihood,
    kl_standard_normal,
    masked_rmse,
    merge_points,
    time_since_previous,
)


def test_kl_matches_torch_distributions():
    mean, logvar = torch.randn(5, 3), torch.randn(5, 3)
    expected = kl_divergence(Normal(mean, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(kl_standard_normal(mean, logvar), expected)
    assert kl_standard_normal(torch.zeros(1, 2), torch.zeros(1, 2)).item() == 0.0


def test_gaussian_log_likelihood_matches_normal_and_ignores_masked():
    x, mean = torch.randn(2, 4, 3), torch.randn(2, 4, 3, requires_grad=True)
    mask = torch.rand(2, 4, 3) > 0.3
    expected = (Normal(mean, 0.5).log_prob(x) * mask).sum(dim=(1, 2))
    got = gaussian_log_likelihood(x, mean, 0.5, mask)
    torch.testing.assert_close(got, expected)
    poisoned = torch.where(mask, x, torch.full_like(x, float("nan")))
    got = gaussian_log_likelihood(poisoned, mean, 0.5, mask)
    torch.testing.assert_close(got, expected)
    got.sum().backward()
    assert torch.isfinite(mean.grad).all()
    assert (mean.grad[~mask] == 0).all()


def test_per_step_mask_broadcasts_over_values():
    x, mean = torch.randn(2, 3, 2), torch.zeros(2, 3, 2)
    step_mask = torch.tensor([[True, False, True], [True, True, False]])
    per_value = step_mask.unsqueeze(-1).expand(2, 3, 2)
    torch.testing.assert_close(
        gaussian_log_likelihood(x, mean, 1.0, step_mask),
        gaussian_log_likelihood(x, mean, 1.0, per_value),
    )


def test_masked_rmse_known_value_and_empty_mask():
    pred = torch.zeros(1, 2, 1)
    target = torch.tensor([[[3.0], [100.0]]])
    mask = torch.tensor([[True, False]])
    assert masked_rmse(pred, target, mask).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="all False"):
        masked_rmse(pred, target, torch.zeros(1, 2, dtype=torch.bool))


def test_time_since_previous_skips_padding_and_checks_order():
    t = torch.tensor([[0.5, 9.0, 1.5, 2.0]])
    mask = torch.tensor([[True, False, True, True]])
    gaps = time_since_previous(t, mask, t0=0.0)
    torch.testing.assert_close(gaps, torch.tensor([[0.5, 0.0, 1.0, 0.5]]))
    with pytest.raises(ValueError, match="sorted"):
        time_since_previous(torch.tensor([[1.0, 0.5]]), torch.ones(1, 2, dtype=torch.bool), 0.0)
    with pytest.raises(ValueError, match="t0"):
        time_since_previous(torch.tensor([[-1.0]]), torch.ones(1, 1, dtype=torch.bool), 0.0)


def test_merge_points_sorts_and_moves_padding_last():
    batch = {
        "obs_t": torch.tensor([[0.0, 2.0, 7.0]]),
        "obs_x": torch.tensor([[[0.0], [2.0], [7.0]]]),
        "obs_mask": torch.tensor([[True, True, False]]),
        "target_t": torch.tensor([[1.0, 3.0]]),
        "target_x": torch.tensor([[[1.0], [3.0]]]),
        "target_mask": torch.tensor([[True, True]]),
    }
    t, x, mask = merge_points(batch)
    assert t[0, :4].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert x[0, :4, 0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert mask[0, :, 0].tolist() == [True, True, True, True, False]
    assert t[0, 4].item() == 3.0  # padding takes the last observed time


def test_check_batch_errors_are_clear():
    with pytest.raises(TypeError, match="dict batch"):
        check_batch((torch.zeros(1), torch.zeros(1)))
    with pytest.raises(ValueError, match="lacks target_t"):
        check_batch({"obs_t": 0, "obs_x": 0, "obs_mask": 0, "target_x": 0, "target_mask": 0})


@pytest.mark.parametrize("ode_solver", [None, {}])
def test_encoder_ignores_padded_steps(ode_solver):
    torch.manual_seed(0)
    enc = BackwardEncoder(obs_dim=2, latent_dim=3, hidden=8, ode_solver=ode_solver)
    t = torch.tensor([[0.1, 0.4, 0.9]])
    x = torch.randn(1, 3, 2)
    mean, logvar = enc(t, x, torch.ones(1, 3, dtype=torch.bool))
    assert mean.shape == logvar.shape == (1, 3)
    # The same series with a padded step in the middle and garbage values/time there.
    t_pad = torch.tensor([[0.1, 5.0, 0.4, 0.9]])
    x_pad = torch.cat([x[:, :1], torch.full((1, 1, 2), float("nan")), x[:, 1:]], 1)
    mask_pad = torch.tensor([[True, False, True, True]])
    mean_pad, logvar_pad = enc(t_pad, x_pad, mask_pad)
    torch.testing.assert_close(mean_pad, mean)
    torch.testing.assert_close(logvar_pad, logvar)
    # ... and the encoder does read the times.
    mean_shift, _ = enc(t + 0.05, x, torch.ones(1, 3, dtype=torch.bool))
    assert not torch.allclose(mean_shift, mean)


def test_odernn_evolve_follows_the_gap():
    torch.manual_seed(0)
    cell = ODERNNCell(input_size=3, hidden_size=4)
    h = torch.randn(2, 4)
    same = cell.evolve(h, torch.zeros(2))
    torch.testing.assert_close(same, h)
    moved = cell.evolve(h, torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(moved[0], h[0])  # a zero gap leaves that series alone
    assert not torch.allclose(moved[1], h[1])
    back = cell.evolve(moved, torch.tensor([0.0, -1.0]))
    torch.testing.assert_close(back, h, atol=1e-2, rtol=0)  # approximately reversible
    assert math.isfinite(float(back.detach().sum()))


def test_odernn_encoder_counts_every_gap_forward_and_backward():
    """The callbacks read ``ODEBlock.stats`` after a pass: with one solve per observation gap,
    it must hold the whole sequence, not just the last gap (fixed-step rk4 with h = 0.5 over
    the unit interval: 2 steps x 4 stages = 8 evaluations per solve)."""
    torch.manual_seed(0)
    solver = {"method": "rk4", "step_size": 0.5, "gradient": "adjoint"}
    enc = BackwardEncoder(obs_dim=2, latent_dim=3, hidden=5, ode_solver=solver)
    t = torch.tensor([[0.5, 1.0, 1.5, 2.0, 2.5]])
    x = torch.randn(1, 5, 2)
    mean, logvar = enc(t, x, t0=0.0)
    block = enc.odernn.ode
    # gaps between the 5 observations (4 solves) and from the first one back to t0 (1 solve)
    assert block.stats.nfe_forward == 5 * 8
    (mean.sum() + logvar.sum()).backward()
    assert block.stats.nfe_backward == 5 * 8  # adjoint: one backward solve per forward solve
    enc(t, x, t0=0.0)  # a new pass starts new statistics
    assert block.stats.nfe_forward == 5 * 8 and block.stats.nfe_backward == 0


def test_odernn_checkpoint_gradients_equal_backprop():
    """Checkpoint and adjoint backward solves run after the forward pass has moved on to later
    gaps; each must still integrate with its own gap (it travels in the state)."""
    t = torch.tensor([[0.3, 0.9, 1.2, 2.0], [0.1, 0.4, 1.7, 1.8]], dtype=torch.float64)
    x = torch.randn(2, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    grads = {}
    for gradient in ("backprop", "checkpoint"):
        torch.manual_seed(0)
        solver = {"method": "rk4", "step_size": 0.25, "gradient": gradient}
        enc = BackwardEncoder(obs_dim=2, latent_dim=3, hidden=5, ode_solver=solver).double()
        mean, logvar = enc(t, x, t0=0.0)
        (mean.square().sum() + logvar.sum()).backward()
        grads[gradient] = [p.grad.clone() for p in enc.parameters()]
    for a, b in zip(grads["backprop"], grads["checkpoint"], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
