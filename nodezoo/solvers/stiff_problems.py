"""Standard stiff test problems as torch vector fields ``f(t, y)``.

Robertson's chemical kinetics, van der Pol in Hairer & Wanner's scaled form and HIRES, from the
IVP test set (Hairer & Wanner, "Solving ODEs II"; Mazzia & Magherini, Bari). One definition,
shared by the stiff tests, ``benchmarks/stiff.py`` and the examples, so all of them solve the
same equations. Each field acts on the last dimension, so a batch ``(B, n)`` of states works too.
"""

from __future__ import annotations

import torch

__all__ = [
    "HIRES_END",
    "HIRES_T_END",
    "HIRES_Y0",
    "ROBERTSON_1E11",
    "ROBERTSON_Y0",
    "hires",
    "robertson",
    "van_der_pol",
]

ROBERTSON_Y0 = (1.0, 0.0, 0.0)
# Robertson's y(1e11) from the IVP test set; scipy's Radau at rtol = atol = 1e-12 agrees to 3e-7
# relative.
ROBERTSON_1E11 = (2.083340149701255e-8, 8.333360770334713e-14, 0.9999999791665050)
HIRES_Y0 = (1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0057)
HIRES_T_END = 321.8122
# HIRES y(321.8122) from the IVP test set; scipy's Radau at 1e-12 agrees to 5e-11 relative.
HIRES_END = (7.371312573325668e-4, 1.442485726316185e-4, 5.888729740967575e-5,
             1.175651343283149e-3, 2.386356198831331e-3, 6.238968252742796e-3,
             2.849998395185769e-3, 2.850001604814231e-3)  # fmt: skip


def robertson(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Robertson's three-species reaction (rates 0.04, 1e4, 3e7), stiff for t up to 1e11."""
    y1, y2, y3 = y[..., 0], y[..., 1], y[..., 2]
    return torch.stack(
        [-0.04 * y1 + 1e4 * y2 * y3, 0.04 * y1 - 1e4 * y2 * y3 - 3e7 * y2**2, 3e7 * y2**2], -1
    )


def van_der_pol(mu: float | torch.Tensor):
    """Hairer & Wanner's scaled form (eps = 1/mu): ``y1' = y2, y2' = mu ((1 - y1^2) y2 - y1)``;
    one relaxation oscillation takes t ~ 1.6, the first jump is near t ~ 0.8. ``mu`` may be a
    tensor ``(B,)`` for a batch of problems."""

    def f(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.stack([y[..., 1], mu * ((1 - y[..., 0] ** 2) * y[..., 1] - y[..., 0])], -1)

    return f


def hires(t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """HIRES: 8 reactions of plant physiology (light-dependent growth), t in [0, 321.8122]."""
    y1, y2, y3, y4, y5, y6, y7, y8 = y.unbind(-1)
    r = 280.0 * y6 * y8
    return torch.stack([
        -1.71 * y1 + 0.43 * y2 + 8.32 * y3 + 0.0007,
        1.71 * y1 - 8.75 * y2,
        -10.03 * y3 + 0.43 * y4 + 0.035 * y5,
        8.32 * y2 + 1.71 * y3 - 1.12 * y4,
        -1.745 * y5 + 0.43 * y6 + 0.43 * y7,
        -r + 0.69 * y4 + 1.71 * y5 - 0.43 * y6 + 0.69 * y7,
        r - 1.81 * y7,
        -r + 1.81 * y7,
    ], -1)  # fmt: skip
