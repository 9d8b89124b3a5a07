"""Density data: seeded 2-D samplers with fresh epochs; dequantised digits with a fixed split."""

from __future__ import annotations

import math

import pytest
import torch

from nodezoo.data.density import (
    DIGIT_LEVELS,
    TOY_DENSITIES,
    DigitsDensityDataModule,
    ToyDensityDataModule,
    sample_toy,
)


def epoch_batches(dm: ToyDensityDataModule) -> torch.Tensor:
    return torch.cat(list(dm.train_dataloader()))


@pytest.mark.parametrize("name", sorted(TOY_DENSITIES))
def test_each_density_is_seeded_finite_and_where_it_should_be(name):
    x = sample_toy(name, 2000, 0)
    assert x.shape == (2000, 2) and x.dtype == torch.float32 and torch.isfinite(x).all()
    assert torch.equal(x, sample_toy(name, 2000, 0))
    assert not torch.equal(x, sample_toy(name, 2000, 1))
    assert x.abs().max() < 6.0  # all six live in about [-4, 4]^2
    assert x.mean(0).abs().max() < 0.4  # and near the origin (moons sits 0.3 above it)


def test_densities_have_their_shapes():
    gauss = sample_toy("8gaussians", 4000, 0)
    radius = gauss.norm(dim=1)
    assert abs(radius.median().item() - 4 / 1.414) < 0.2  # modes on a circle of radius 4/√2
    board = sample_toy("checkerboard", 4000, 0)
    cell = (torch.floor(board[:, 0] / 2) + torch.floor(board[:, 1] / 2)) % 2
    assert cell.unique().numel() == 1  # only one colour of the 4x4 board is occupied
    circles = sample_toy("circles", 4000, 0).norm(dim=1)
    assert ((circles - 1.5).abs() < 0.5).float().mean() > 0.4
    assert ((circles - 3.0).abs() < 0.5).float().mean() > 0.4
    with pytest.raises(ValueError, match="Unknown 2-D density 'swirl'; choose one of"):
        sample_toy("swirl", 10, 0)
    assert torch.equal(sample_toy("two-spirals", 10, 0), sample_toy("two_spirals", 10, 0))


def test_training_draws_fresh_points_every_epoch_reproducibly():
    dm = ToyDensityDataModule("pinwheel", n_train=300, batch_size=100, seed=5)
    loader = dm.train_dataloader()
    first, second = torch.cat(list(loader)), torch.cat(list(loader))  # a plain loop's epochs
    assert first.shape == (300, 2)
    assert not torch.equal(first, second)  # a new epoch, new points
    again = ToyDensityDataModule("pinwheel", n_train=300, batch_size=100, seed=5)
    assert torch.equal(epoch_batches(again), first)  # same seed, same run
    loader = again.train_dataloader()
    loader.sampler.set_epoch(1)  # as Lightning does before each epoch
    assert torch.equal(torch.cat(list(loader)), second)
    other = ToyDensityDataModule("pinwheel", n_train=300, batch_size=100, seed=6)
    assert not torch.equal(epoch_batches(other), first)
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and not torch.equal(batches[0], batches[1])
    for i, batch in enumerate(ToyDensityDataModule("pinwheel", n_train=300, batch_size=100,
                                                   seed=5).train_dataloader()):  # fmt: skip
        assert torch.equal(batch, sample_toy("pinwheel", 100, [5, 0, i]))  # batch i, in order


def test_validation_and_test_points_are_fixed_and_distinct():
    dm = ToyDensityDataModule("moons", n_val=200, n_test=300, batch_size=128, seed=2)
    val, test = torch.cat(list(dm.val_dataloader())), torch.cat(list(dm.test_dataloader()))
    assert val.shape == (200, 2) and test.shape == (300, 2)
    epoch_batches(dm)
    assert torch.equal(torch.cat(list(dm.val_dataloader())), val)  # not redrawn per epoch
    same = ToyDensityDataModule("moons", n_val=200, n_test=300, seed=2)
    assert torch.equal(torch.cat(list(same.test_dataloader())), test)
    assert not torch.equal(val, test[:200])
    fresh = ToyDensityDataModule("moons", n_val=200, n_test=300, seed=2, test_seed=99)
    fresh_test = torch.cat(list(fresh.test_dataloader()))
    assert not torch.equal(fresh_test, test)  # a fresh test sample for re-evaluation
    assert torch.equal(fresh_test, sample_toy("moons", 300, 99))
    with pytest.raises(ValueError, match="must be >= 1"):
        ToyDensityDataModule(batch_size=0)


def test_digits_split_matches_the_classifier_split_and_is_dequantised():
    pytest.importorskip("sklearn")
    from nodezoo.data import DigitsDataModule

    dm = DigitsDensityDataModule(batch_size=100, val_size=200, test_size=397, seed=0)
    dm.setup()
    sizes = {name: len(split) for name, split in dm.splits.items()}
    assert sizes == {"train": 1200, "val": 200, "test": 397}
    images = DigitsDataModule(image_size=8, val_size=200, test_size=397, seed=0)
    images.setup()
    for name in ("train", "val", "test"):
        expected = images.splits[name].tensors[0].flatten(1) * 16
        torch.testing.assert_close(dm.pixels(name), expected)
    pixels = dm.pixels("test")
    assert pixels.min() == 0 and pixels.max() == 16 and torch.equal(pixels, pixels.round())
    test = torch.cat(list(dm.test_dataloader()))
    assert test.shape == (397, 64) and 0 <= test.min() and test.max() < 1
    # each value lies in its pixel's bin [k, k + 1) / 17, spread over it (not its corner)
    u = test * DIGIT_LEVELS - pixels
    assert (u >= -1e-5).all() and (u < 1 + 1e-5).all()
    assert 0.4 < u.mean() < 0.6 and u.std() > 0.25
    # val/test noise is fixed; training noise is fresh at every access
    same = DigitsDensityDataModule(batch_size=100, seed=0)
    assert torch.equal(torch.cat(list(same.test_dataloader())), test)
    renoised = DigitsDensityDataModule(batch_size=100, seed=0, noise_seed=7)
    retest = torch.cat(list(renoised.test_dataloader()))
    assert torch.equal(renoised.pixels("test"), pixels) and not torch.equal(retest, test)
    mean, std = dm.standardization()  # exact moments of the dequantised training data
    draws = torch.stack([dm.splits["train"][i] for i in range(1200)] * 4)
    torch.testing.assert_close(mean, draws.mean(0), rtol=0, atol=3e-3)
    torch.testing.assert_close(std, draws.std(0), rtol=0.03, atol=1e-3)
    train = dm.splits["train"]
    assert not torch.equal(train[0], train[0])
    torch.testing.assert_close(torch.floor(train[0] * DIGIT_LEVELS), dm.pixels("train")[0])


def test_a_uniform_model_scores_log2_17_bits_per_dim():
    """The dequantised data's density on [0, 1)^64 is 1 for a uniform model: NLL 0 nats, and
    each of the 17 levels gets probability 1/17, so bits/dim is exactly log2(17)."""
    from nodezoo.models.cnf import nats_to_bits_per_dim

    assert nats_to_bits_per_dim(0.0, DigitsDensityDataModule.dim, DIGIT_LEVELS) == pytest.approx(
        math.log2(17)
    )
    # a density twice as high everywhere the data are: one bit less per image, 1/64 per dim
    assert nats_to_bits_per_dim(-math.log(2), 64, 17) == pytest.approx(math.log2(17) - 1 / 64)
