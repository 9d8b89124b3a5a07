import pytest
import torch
from torch import nn

from nodezoo.nn import ReversibleBlock, ReversibleSequence


def residual_fn(channels: int) -> nn.Module:
    return nn.Sequential(
        nn.GroupNorm(2, channels), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)
    )


def make_stack(depth: int, channels: int = 8, memory_efficient: bool = True, seed: int = 0):
    torch.manual_seed(seed)
    half = channels // 2
    blocks = [ReversibleBlock(residual_fn(half), residual_fn(half)) for _ in range(depth)]
    return ReversibleSequence(blocks, memory_efficient=memory_efficient)


def test_gradients_equal_plain_backprop():
    stack = make_stack(3).double()
    x = torch.randn(2, 8, 5, 5, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 8, 5, 5, dtype=torch.float64)

    def grads(memory_efficient):
        stack.memory_efficient = memory_efficient
        stack.zero_grad()
        x.grad = None
        y = stack(x)
        (y * weights).sum().backward()
        return y.detach(), x.grad.clone(), [p.grad.clone() for p in stack.parameters()]

    y_rev, dx_rev, dp_rev = grads(True)
    y_ref, dx_ref, dp_ref = grads(False)
    assert torch.allclose(y_rev, y_ref, rtol=0, atol=1e-12)
    assert torch.allclose(dx_rev, dx_ref, rtol=1e-10, atol=1e-12)
    assert len(dp_rev) == 3 * 2 * 4  # blocks x (F, G) x (GN w, b, conv w, b)
    for a, b in zip(dp_rev, dp_ref):
        assert a.abs().sum() > 0
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)


def test_gradcheck_through_the_reversible_function():
    stack = make_stack(2, channels=4).double()
    x = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(stack, (x,), eps=1e-6, atol=1e-6, fast_mode=True)


def test_inverse_reconstructs_the_input():
    stack = make_stack(6)
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        error = (stack.inverse(stack(x)) - x).abs().max().item()
    assert error < 1e-5


def saved_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for backward (deterministic, unlike RSS)."""
    total = 0

    def pack(t):
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        module(x)
    return total


def test_activation_memory_is_flat_in_depth():
    x = torch.randn(2, 8, 6, 6, requires_grad=True)
    rev = [saved_bytes(make_stack(d), x) for d in (1, 2, 4, 8)]
    plain = [saved_bytes(make_stack(d, memory_efficient=False), x) for d in (1, 2, 4, 8)]
    assert len(set(rev)) == 1, rev  # only the output is kept, whatever the depth
    per_block = plain[1] - plain[0]
    assert per_block > 0
    assert plain == [plain[0] + (d - 1) * per_block for d in (1, 2, 4, 8)]
    assert rev[0] == x.numel() * x.element_size()


def test_no_grad_mode_runs_plainly():
    stack = make_stack(2)
    x = torch.randn(1, 8, 4, 4)
    with torch.no_grad():
        y = stack(x)
    assert y.shape == x.shape and not y.requires_grad


def test_bad_inputs():
    stack = make_stack(1)
    with pytest.raises(ValueError, match="even"):
        stack(torch.randn(1, 7, 4, 4, requires_grad=True))
    with pytest.raises(TypeError, match="ReversibleBlock"):
        ReversibleSequence([nn.Identity()])
