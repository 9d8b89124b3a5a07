import pytest
import torch

from nodezoo.nn import AugmentChannels, ConcatConv2d, ConvODEField, MLPField, ODEBlock, group_norm


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_concat_conv_sees_time():
    torch.manual_seed(0)
    conv = ConcatConv2d(3, 5)
    x = torch.randn(2, 3, 6, 6)
    y0, y1 = conv(torch.tensor(0.0), x), conv(torch.tensor(1.0), x)
    assert y0.shape == (2, 5, 6, 6)
    assert conv.conv.in_channels == 4
    assert not torch.allclose(y0, y1)


def test_conv_field_matches_paper_size_and_keeps_shape():
    field = ConvODEField(64)
    # 3 GroupNorms (128 each) + 2 ConcatConv2d(65 -> 64, 3x3) with bias.
    assert n_params(field) == 3 * 128 + 2 * (65 * 64 * 9 + 64)
    assert field.norm1.num_groups == 32
    x = torch.randn(2, 64, 5, 5)
    assert field(torch.tensor(0.5), x).shape == x.shape


def test_augmented_field_widens_the_state():
    field = ConvODEField(8, augment_channels=3)
    block = ODEBlock(field, solver={"method": "rk4", "step_size": 0.5, "gradient": "backprop"})
    x = torch.randn(2, 8, 4, 4)
    z = AugmentChannels(3)(x)
    assert z.shape == (2, 11, 4, 4)
    assert torch.equal(z[:, :8], x) and torch.count_nonzero(z[:, 8:]) == 0
    out = block(z)
    assert out.shape == (2, 11, 4, 4)
    assert out[:, 8:].abs().sum() > 0  # the flow moves the augmented channels
    with pytest.raises(RuntimeError):
        block(x)  # the un-augmented state does not fit the field


def test_group_norm_follows_paper_and_accepts_odd_widths():
    assert group_norm(64).num_groups == 32
    assert group_norm(16).num_groups == 16
    assert group_norm(69).num_groups == 1


@pytest.mark.parametrize("activation", ["tanh", "elu", "relu", "softplus"])
def test_mlp_field_shapes_and_sizes(activation):
    field = MLPField(4, 20, layers=2, activation=activation)
    assert n_params(field) == (4 * 20 + 20) + (20 * 20 + 20) + (20 * 4 + 4)
    assert field(torch.tensor(0.0), torch.randn(7, 4)).shape == (7, 4)


def test_mlp_field_time_dependence():
    torch.manual_seed(0)
    x = torch.randn(3, 2)
    autonomous = MLPField(2, 8)
    assert torch.equal(autonomous(torch.tensor(0.0), x), autonomous(torch.tensor(1.0), x))
    timed = MLPField(2, 8, time_dependent=True)
    assert timed.net[0].in_features == 3
    assert not torch.allclose(timed(torch.tensor(0.0), x), timed(torch.tensor(1.0), x))


def test_bad_field_arguments():
    with pytest.raises(ValueError, match="activation"):
        MLPField(2, 8, activation="gelu")
    with pytest.raises(ValueError, match="layers"):
        MLPField(2, 8, layers=0)
    with pytest.raises(ValueError, match="augment"):
        ConvODEField(8, augment_channels=-1)
