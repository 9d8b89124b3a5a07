"""Spiral generator and data module: shapes, determinism, direction split, observed subsets."""

import math

import numpy as np
import pytest
import torch

from nodezoo.data.spirals import SpiralsDataModule, make_spirals, spiral_curves
from nodezoo.nn.recurrent import BATCH_KEYS


def test_shapes_times_and_noise():
    s = make_spirals(200, seed=0, n_obs=30)
    assert s.clean.shape == s.noisy.shape == (200, 200, 2)
    assert s.times.shape == (200,) and s.times[0] == 0.0
    dt = 6 * math.pi / 999
    torch.testing.assert_close(
        s.times[1:] - s.times[:-1], torch.full((199,), dt), atol=1e-5, rtol=0
    )
    assert float((s.noisy - s.clean).std()) == pytest.approx(0.3, rel=0.05)


def test_seeded_and_half_clockwise():
    a, b, c = make_spirals(50, 3), make_spirals(50, 3), make_spirals(50, 4)
    assert torch.equal(a.noisy, b.noisy) and all(map(torch.equal, a.obs_index, b.obs_index))
    assert not torch.equal(a.noisy, c.noisy)
    assert int(a.clockwise.sum()) == 25 and 0 < int(a.clockwise[:25].sum()) < 25  # shuffled


def test_samples_lie_on_their_curve():
    s = make_spirals(20, seed=1, n_obs=10)
    _, cw, cc = spiral_curves()
    for i in range(20):
        curve = torch.as_tensor(cw if s.clockwise[i] else cc, dtype=torch.float32)
        start = int(torch.argmin((curve - s.clean[i, 0]).norm(dim=1)))
        torch.testing.assert_close(s.clean[i], curve[start : start + 200])
    assert (
        float(s.clean[s.clockwise][..., 0].mean()) < 0 < float(s.clean[~s.clockwise][..., 0].mean())
    )


def test_observed_points_are_sorted_subsets_of_the_window():
    s = make_spirals(100, seed=2, n_obs=[30, 50, 100])
    counts = {len(i) for i in s.obs_index}
    assert counts == {30, 50, 100}
    for index in s.obs_index:
        assert index.min() >= 0 and index.max() < 100
        assert torch.all(index[1:] > index[:-1])


def test_same_seed_same_spirals_for_every_n():
    a, b = make_spirals(10, 7, n_obs=30), make_spirals(10, 7, n_obs=100)
    assert torch.equal(a.clean, b.clean) and torch.equal(a.noisy, b.noisy)


def test_bad_arguments():
    with pytest.raises(ValueError, match="n_obs"):
        make_spirals(10, 0, n_obs=101)
    with pytest.raises(ValueError, match="n_total"):
        make_spirals(10, 0, window=600, horizon=600)
    with pytest.raises(ValueError, match="n_obs"):
        SpiralsDataModule(n_obs=[0, 5])


def test_data_module_batches():
    dm = SpiralsDataModule(
        n_obs=[5, 8],
        n_train=12,
        n_val=4,
        n_test=4,
        window=10,
        horizon=6,
        n_total=100,
        batch_size=6,
        extrapolate_in_training=False,
    )
    train = next(iter(dm.train_dataloader()))
    assert set(BATCH_KEYS) <= set(train)
    assert train["obs_x"].shape[0] == 6 and train["target_x"].shape == (6, 6, 2)
    assert not train["target_mask"].any()  # targets left out of the training loss
    val = next(iter(dm.val_dataloader()))
    assert val["target_mask"].all()
    s = dm.datasets["val"].spirals
    torch.testing.assert_close(val["target_x"], s.clean[:, 10:])  # clean targets for evaluation
    lengths = val["obs_mask"].sum(1).numpy()
    assert set(np.unique(lengths)) <= {5, 8}
