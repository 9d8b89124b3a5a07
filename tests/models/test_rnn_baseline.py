"""RNNBaseline: masked NLL, autoregressive extrapolation, a short fit."""

import pytest
import torch
from ragged import ragged_batch

from nodezoo.data.spirals import make_spirals, spiral_batch
from nodezoo.models.rnn_baseline import RNNBaseline


def tiny(**kw) -> RNNBaseline:
    torch.manual_seed(0)
    return RNNBaseline(**({"obs_dim": 2, "hidden": 8} | kw))


def test_masked_values_do_not_change_the_loss():
    model = tiny()
    batch = ragged_batch()
    loss = model.loss(batch)[0]
    changed = {k: v.clone() for k, v in batch.items()}
    changed["obs_x"][1, 2] = float("nan")
    changed["obs_t"][1, 2] = 42.0
    changed["target_x"][1, 1] = 1e6
    torch.testing.assert_close(model.loss(changed)[0], loss)
    changed["target_x"][0, 1] += 1.0
    assert not torch.allclose(model.loss(changed)[0], loss)


def test_predict_feeds_its_own_mean_forward():
    model = tiny()
    batch = ragged_batch()
    query = torch.tensor([1.0, 1.5, 2.0])
    mean, samples = model.predict(batch["obs_t"], batch["obs_x"], query, 3, batch["obs_mask"])
    assert mean.shape == (2, 3, 2) and samples.shape == (3, 2, 3, 2)
    # The rollout's first two predictions, as teacher-forced training would see them: feeding
    # the first predicted mean as if observed gives the same second prediction.
    series = {k: v[:1] for k, v in batch.items()}
    extended_t = torch.cat([series["obs_t"], query[:1].unsqueeze(0)], 1)
    extended_x = torch.cat([series["obs_x"], mean[:1, :1]], 1)
    again, _ = model.predict(extended_t, extended_x, query[1:2], 0)
    torch.testing.assert_close(again[0, 0], mean[0, 1])
    with pytest.raises(ValueError, match="follow the observations"):
        model.predict(batch["obs_t"], batch["obs_x"], torch.tensor([0.4]), 0, batch["obs_mask"])


def test_without_time_gaps_and_bad_args():
    model = tiny(time_gaps=False, cell="rnn")
    assert torch.isfinite(model.loss(ragged_batch())[0])
    with pytest.raises(ValueError, match="cell"):
        RNNBaseline(cell="lstm")
    with pytest.raises(ValueError, match="min_std"):
        RNNBaseline(min_std=0.0)


def test_short_fit_lowers_the_loss():
    spirals = make_spirals(32, seed=0, n_obs=[5, 10], window=10, horizon=5, n_total=100)
    batch = spiral_batch(spirals, clean_targets=False)
    model = tiny()
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    before = model.loss(batch)[0].item()
    for _ in range(30):
        loss = model.loss(batch)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert model.loss(batch)[0].item() < 0.5 * before
