"""A solve inside another solve's vector field (a latent ODE's encoder inside a model's field, a
CNF inside a loss): the cached per-method stage buffer is busy, so the inner solve must get its
own, and neither may overwrite the other's stages."""

import math

import torch

import nodezoo


def test_a_solve_inside_the_vector_field_of_a_solve_of_the_same_method():
    y0 = torch.tensor([1.0, 2.0], dtype=torch.float64)
    inner_t = torch.tensor([0.0, 0.5], dtype=torch.float64)

    def field(t, y):
        # y' = -y, with -y found by an inner dopri5 solve of z' = -z over [0, 0.5] from y:
        # z(0.5) = y e^-0.5, so -y = -z(0.5) e^0.5
        z = nodezoo.odeint(lambda s, z: -z, y, inner_t, rtol=1e-10, atol=1e-12)[-1]
        return -z * math.exp(0.5)

    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    out = nodezoo.odeint(field, y0, t, rtol=1e-8, atol=1e-10)[-1]
    torch.testing.assert_close(out, y0 * math.exp(-1.0), rtol=1e-7, atol=0)
