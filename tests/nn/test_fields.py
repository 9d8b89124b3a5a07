import pytest
import torch
import torch.nn.functional as F

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


def reference_conv_field(field: ConvODEField, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The paper's field written out the straightforward way: the time channel built and
    concatenated in front of the input, then one conv over all channels."""

    def concat_conv(layer: ConcatConv2d, h):
        tt = torch.ones_like(h[:, :1]) * t
        conv = layer.conv
        return F.conv2d(torch.cat([tt, h], 1), conv.weight, conv.bias, conv.stride, conv.padding)

    def norm(gn, h):
        return F.group_norm(h, gn.num_groups, gn.weight, gn.bias, gn.eps)

    out = concat_conv(field.conv1, F.relu(norm(field.norm1, x)))
    out = concat_conv(field.conv2, F.relu(norm(field.norm2, out)))
    return norm(field.norm3, out)


@pytest.mark.parametrize("augment", [0, 3])
def test_conv_field_matches_reference_in_value_and_gradients(augment):
    torch.manual_seed(0)
    field = ConvODEField(8, augment_channels=augment).double()
    for p in field.parameters():  # GroupNorm starts at (1, 0); move it so its gradients matter
        p.data.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, 8 + augment, 5, 5, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    params = [x, t, *field.parameters()]
    out, ref = field(t, x), reference_conv_field(field, t, x)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    seed = torch.randn_like(out)
    grads = torch.autograd.grad(out, params, seed)
    ref_grads = torch.autograd.grad(ref, params, seed)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)
    assert all(g.abs().sum() > 0 for g in grads)  # every input, t and parameter is exercised


def test_conv_field_float32_matches_float64_reference():
    """The float32 field is as close to the float64 reference as float32 arithmetic allows."""
    torch.manual_seed(0)
    field = ConvODEField(64)
    x, t = torch.randn(4, 64, 6, 6), torch.tensor(0.3)
    out = field(t, x)
    ref = reference_conv_field(field.double(), t.double(), x.double())
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride, padding, size", [(1, 1, 5), (2, 1, 6), (1, 0, 5)])
def test_concat_conv_matches_concatenated_time_channel(stride, padding, size):
    """The time channel's share (a padded ones image through the time weights) is right at the
    borders for any stride and padding, and for a Python float t."""
    torch.manual_seed(0)
    conv = ConcatConv2d(4, 6, 3, stride, padding).double()
    x = torch.randn(2, 4, size, size, dtype=torch.float64)
    for t in (0.4, torch.tensor(-1.3, dtype=torch.float64)):
        tt = torch.ones_like(x[:, :1]) * t
        ref = conv.conv(torch.cat([tt, x], 1))
        torch.testing.assert_close(conv(t, x), ref, rtol=1e-12, atol=1e-12)


def test_conv_field_keeps_parameter_names_and_shapes():
    """Shipped checkpoints load strictly: the state dict keys and shapes are fixed."""
    shapes = {k: tuple(v.shape) for k, v in ConvODEField(64).state_dict().items()}
    assert shapes == {
        **{f"norm{i}.{p}": (64,) for i in (1, 2, 3) for p in ("weight", "bias")},
        **{f"conv{i}.conv.weight": (64, 65, 3, 3) for i in (1, 2)},
        **{f"conv{i}.conv.bias": (64,) for i in (1, 2)},
    }


def test_conv_field_in_an_adjoint_solve_matches_reference():
    """Through a whole solve with adjoint gradients (the ODE-Net's gradient mode), in float64:
    same outputs and gradients as the straightforward field. Fixed steps, so that an adaptive
    controller's sensitivity to the last bits does not blur the comparison."""

    class ReferenceField(torch.nn.Module):
        def __init__(self, field):
            super().__init__()
            self.field = field

        def forward(self, t, x):
            return reference_conv_field(self.field, t, x)

    torch.manual_seed(0)
    field = ConvODEField(8).double()
    solver = {"method": "rk4", "step_size": 0.25, "gradient": "adjoint"}
    blocks = [ODEBlock(field, solver=solver), ODEBlock(ReferenceField(field), solver=solver)]
    x = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    results = []
    for block in blocks:
        y = x.clone().requires_grad_(True)
        out = block(y)
        grads = torch.autograd.grad(out.square().sum(), [y, *field.parameters()])
        results.append((out, grads, block.nfe_forward, block.nfe_backward))
    (out, grads, nfe_f, nfe_b), (ref, ref_grads, ref_nfe_f, ref_nfe_b) = results
    assert (nfe_f, nfe_b) == (ref_nfe_f, ref_nfe_b)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_fields_take_one_time_per_sample():
    """With t of shape (batch,) (``solve_independent``), sample b sees its own time: the
    same as evaluating it alone at that time."""
    torch.manual_seed(0)
    conv = ConvODEField(8)
    mlp = MLPField(3, 16, time_dependent=True)
    t = torch.tensor([0.0, 0.4, 1.3])
    for field, x in ((conv, torch.randn(3, 8, 5, 5)), (mlp, torch.randn(3, 3))):
        batched = field(t, x)
        for b in range(3):
            torch.testing.assert_close(batched[b : b + 1], field(t[b], x[b : b + 1]))


def test_conv_field_in_an_independent_solve_matches_solving_each_image():
    from nodezoo.solvers import solve, solve_independent

    torch.manual_seed(0)
    field = ConvODEField(8).double()
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    t = torch.tensor([[0.0, 1.0], [0.0, 0.5], [0.2, 0.9]], dtype=torch.float64)
    config = {"rtol": 1e-6, "atol": 1e-8, "gradient": "backprop"}
    ys = solve_independent(field, x, t, config)
    for b in range(3):
        alone = solve(field, x[b : b + 1], t[b], config)
        # this field rejects about every other step at rtol 1e-6: where an error ratio is
        # within rounding of 1 the two step sequences part, so agreement is to the tolerance
        torch.testing.assert_close(ys[:, b : b + 1], alone, rtol=1e-4, atol=1e-4)
