"""The Newton Jacobian of a vector field that autograd differentiates but vmap cannot (a
custom autograd.Function computed outside torch): ``newton.jacobian`` falls back to one
backward pass per row (mutation survivor of that fallback, eighth run; the fallback also could
not run at all, since the failed batched pass had freed the graph)."""

import torch

import nodezoo
from nodezoo.solvers.newton import jacobian

F64 = torch.float64
A = torch.tensor([[1.0, 2.0, 0.0], [0.0, 3.0, -1.0], [4.0, 0.0, 5.0]], dtype=F64)


class NumpySquare(torch.autograd.Function):
    """y**2 computed in numpy, as a wrapped external routine would be: no batching rule."""

    @staticmethod
    def forward(ctx, y):
        ctx.save_for_backward(y)
        return torch.from_numpy(y.detach().numpy() ** 2)

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.from_numpy(2 * y.numpy() * grad.numpy())


def test_the_row_by_row_fallback_gives_the_analytic_jacobian():
    """f(y) = A y**2 has df/dy = A diag(2 y)."""
    y = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    J = jacobian(lambda t, y, toward=None: A @ NumpySquare.apply(y), 0.0, y)
    assert torch.equal(J, (A * (2 * y))[None])


def test_an_implicit_solve_of_a_numpy_backed_field_matches_the_torch_one():
    """y' = -A y**2 / 10 from y = (1, 0.5, 0.2): the same solve with y**2 in torch (whose
    Jacobian comes from the batched pass) is the reference."""
    y0, t = torch.tensor([1.0, 0.5, 0.2], dtype=F64), torch.tensor([0.0, 1.0], dtype=F64)
    options = {"method": "kvaerno5", "rtol": 1e-8, "atol": 1e-10}
    numpy_backed = nodezoo.odeint(lambda t, y: -A @ NumpySquare.apply(y) / 10, y0, t, **options)
    reference = nodezoo.odeint(lambda t, y: -A @ y**2 / 10, y0, t, **options)
    torch.testing.assert_close(numpy_backed, reference, rtol=1e-7, atol=1e-9)
