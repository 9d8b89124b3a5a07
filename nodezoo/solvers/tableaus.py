"""Explicit Runge–Kutta methods, each one nothing but its Butcher tableau.

One integration loop (``nodezoo.solvers.rk``) serves all of them. Method names follow
torchdiffeq (``dopri5``, ``bosh3``, ``rk4`` ...), so its users feel at home.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import SolverConfigError


@dataclass(frozen=True)
class ButcherTableau:
    """Coefficients of an explicit RK method.

    ``a[i]`` holds the coefficients of stage ``i + 1`` on stages ``0..i``. ``b_error`` (adaptive
    methods only) is ``b - b_low``: the difference to the embedded lower-order solution.
    ``fsal`` (first same as last) means the last stage is ``f(t1, y1)`` and is reused as the next
    step's first stage. ``mid`` are the weights of a dense-output value at half the step, used for
    quartic interpolation; without them outputs use cubic Hermite interpolation (FSAL methods) or
    must lie on the step grid (fixed-step methods). ``error_order`` is the power of h in the
    local error estimate when it is not ``order`` (an embedded solution of order p - 1 gives
    h**p); the step-size controller's exponent is its reciprocal.
    """

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None = None
    fsal: bool = False
    mid: tuple[float, ...] | None = None
    error_order: int | None = None
    _dense: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def control_order(self) -> int:
        return self.error_order or self.order

    @property
    def adaptive(self) -> bool:
        return self.b_error is not None

    @property
    def has_dense_output(self) -> bool:
        return self.fsal or self.adaptive

    def dense_weights(self, theta: float) -> np.ndarray:
        """Weights ``w`` with ``y(t0 + theta h) = y0 + h * sum_i w_i k_i``.

        The interpolant through y0, y1, f0 = k_0, f1 = k_last (and y_mid when the method
        has it) is linear in the stages, so every output costs one matrix-vector product.
        """
        poly = self.dense_polynomials()
        powers = theta ** np.arange(poly.shape[1])
        return poly @ powers

    def dense_polynomials(self) -> np.ndarray:
        """Matrix P (stages x degree + 1) with ``dense_weights(theta) = P @ theta**arange``
        (for weights at many thetas at once)."""
        if not self.has_dense_output:
            raise ValueError(f"{self.name} has no dense output; outputs must lie on its step grid")
        dense = self._dense
        if dense is None:
            dense = _dense_output_polynomials(self)
            object.__setattr__(self, "_dense", dense)
        return dense


def _dense_output_polynomials(tab: ButcherTableau) -> np.ndarray:
    """Matrix P (stages x degree+1) such that the dense weights are ``P @ theta**arange``.

    In units of h, with Y(theta) = (y(theta) - y0) / h: Y(0) = 0, Y'(0) = k_0, Y(1) = b.k,
    Y'(1) = k_last (FSAL methods only: there the last stage is f(t1, y1)), and, with ``mid``,
    Y(1/2) = mid.k. Each condition is a vector over stages, so we solve for polynomial
    coefficients whose entries are such vectors.
    """
    s = tab.stages
    e0 = np.zeros(s)
    e0[0] = 1.0
    e_last = np.zeros(s)
    e_last[-1] = 1.0
    b = np.asarray(tab.b, dtype=np.float64)
    mid = tab.mid
    if mid is None and tab.order >= 5:
        mid = _midpoint_weights(tab, order=4)
    degree = (4 if mid is not None else 3) - (0 if tab.fsal else 1)
    rows, rhs = [], []
    powers = np.arange(degree + 1)
    rows.append(np.where(powers == 0, 1.0, 0.0))  # Y(0) = 0
    rhs.append(np.zeros(s))
    rows.append(np.where(powers == 1, 1.0, 0.0))  # Y'(0) = k0
    rhs.append(e0)
    rows.append(np.ones(degree + 1))  # Y(1) = b.k
    rhs.append(b)
    if tab.fsal:
        rows.append(powers.astype(np.float64))  # Y'(1) = k_last
        rhs.append(e_last)
    if mid is not None:
        rows.append(0.5**powers)
        rhs.append(np.asarray(mid, dtype=np.float64))
    coeffs = np.linalg.solve(np.stack(rows), np.stack(rhs))  # (degree+1, s)
    return np.ascontiguousarray(coeffs.T)


def _midpoint_weights(tab: ButcherTableau, order: int) -> np.ndarray:
    """Weights ``w`` with ``y(t0 + h/2) ~ y0 + h w.k`` to the given order (at most 4).

    Solves the continuous-extension order conditions at theta = 1/2 (minimum-norm solution),
    for methods published without mid-step weights (e.g. tsit5); dense output is then quartic.
    """
    theta = 0.5
    s = tab.stages
    c = np.asarray(tab.c)
    A = np.zeros((s, s))
    for i, row in enumerate(tab.a):
        A[i + 1, : len(row)] = row
    conditions = [
        (np.ones(s), theta),
        (c, theta**2 / 2),
        (c**2, theta**3 / 3),
        (A @ c, theta**3 / 6),
        (c**3, theta**4 / 4),
        (c * (A @ c), theta**4 / 8),
        (A @ c**2, theta**4 / 12),
        (A @ (A @ c), theta**4 / 24),
    ][: {1: 1, 2: 2, 3: 4, 4: 8}[order]]
    M = np.stack([row for row, _ in conditions])
    rhs = np.array([value for _, value in conditions])
    w = np.linalg.lstsq(M, rhs, rcond=None)[0]
    if np.abs(M @ w - rhs).max() > 1e-12:
        raise ValueError(f"{tab.name} has no order-{order} continuous extension at theta=1/2")
    return w


def _tableau(
    name, order, c, a, b, b_low=None, fsal=False, mid=None, error_order=None
) -> ButcherTableau:
    b_error = None if b_low is None else tuple(bi - bl for bi, bl in zip(b, b_low, strict=True))
    return ButcherTableau(
        name=name,
        order=order,
        c=tuple(float(x) for x in c),
        a=tuple(tuple(float(x) for x in row) for row in a),
        b=tuple(float(x) for x in b),
        b_error=b_error,
        fsal=fsal,
        mid=None if mid is None else tuple(float(x) for x in mid),
        error_order=error_order,
    )


EULER = _tableau("euler", 1, c=[0], a=[], b=[1])
MIDPOINT = _tableau("midpoint", 2, c=[0, 1 / 2], a=[[1 / 2]], b=[0, 1])
HEUN = _tableau("heun", 2, c=[0, 1], a=[[1]], b=[1 / 2, 1 / 2])
HEUN3 = _tableau("heun3", 3, c=[0, 1 / 3, 2 / 3], a=[[1 / 3], [0, 2 / 3]], b=[1 / 4, 0, 3 / 4])
# torchdiffeq's "rk4" is Kutta's 3/8 rule; keep that so results match after switching.
RK4 = _tableau(
    "rk4",
    4,
    c=[0, 1 / 3, 2 / 3, 1],
    a=[[1 / 3], [-1 / 3, 1], [1, -1, 1]],
    b=[1 / 8, 3 / 8, 3 / 8, 1 / 8],
)
RK4_CLASSIC = _tableau(
    "rk4_classic",
    4,
    c=[0, 1 / 2, 1 / 2, 1],
    a=[[1 / 2], [0, 1 / 2], [0, 0, 1]],
    b=[1 / 6, 1 / 3, 1 / 3, 1 / 6],
)

# Heun–Euler 2(1), FSAL form: the last stage is f(t1, y1).
ADAPTIVE_HEUN = _tableau(
    "adaptive_heun",
    2,
    c=[0, 1, 1],
    a=[[1], [1 / 2, 1 / 2]],
    b=[1 / 2, 1 / 2, 0],
    b_low=[1, 0, 0],
    fsal=True,
)

# Bogacki–Shampine 3(2).
BOSH3 = _tableau(
    "bosh3",
    3,
    c=[0, 1 / 2, 3 / 4, 1],
    a=[[1 / 2], [0, 3 / 4], [2 / 9, 1 / 3, 4 / 9]],
    b=[2 / 9, 1 / 3, 4 / 9, 0],
    b_low=[7 / 24, 1 / 4, 1 / 3, 1 / 8],
    fsal=True,
)

# Dormand–Prince 5(4). The embedded 4th-order weights are the FSAL variant torchdiffeq uses
# (Shampine 1986), so step sequences match it exactly; with Shampine's mid-step weights for
# dense output.
_DP_B = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0]
DOPRI5 = _tableau(
    "dopri5",
    5,
    c=[0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1],
    a=[
        [1 / 5],
        [3 / 40, 9 / 40],
        [44 / 45, -56 / 15, 32 / 9],
        [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
        [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
        _DP_B[:6],
    ],
    b=_DP_B,
    b_low=[1951 / 21600, 0, 22642 / 50085, 451 / 720, -12231 / 42400, 649 / 6300, 1 / 60],
    fsal=True,
    mid=[
        6025192743 / 30085553152 / 2,
        0,
        51252292925 / 65400821598 / 2,
        -2691868925 / 45128329728 / 2,
        187940372067 / 1594534317056 / 2,
        -1776094331 / 19743644256 / 2,
        11237099 / 235043384 / 2,
    ],
)

# Tsitouras 5(4) (2011).
_TS_B = [
    0.09646076681806523,
    0.01,
    0.4798896504144996,
    1.379008574103742,
    -3.290069515436081,
    2.324710524099774,
    0.0,
]
_TS_ERR = [
    -0.00178001105222577714,
    -0.0008164344596567469,
    0.007880878010261995,
    -0.1447110071732629,
    0.5823571654525552,
    -0.45808210592918697,
    0.015151515151515152,
]
TSIT5 = _tableau(
    "tsit5",
    5,
    c=[0, 0.161, 0.327, 0.9, 0.9800255409045097, 1, 1],
    a=[
        [0.161],
        [-0.008480655492356989, 0.335480655492357],
        [2.897153057105493, -6.359448489975075, 4.3622954328695815],
        [5.325864828439257, -11.748883564062828, 7.4955393428898365, -0.09249506636175525],
        [
            5.86145544294642,
            -12.92096931784711,
            8.159367898576159,
            -0.071584973281401,
            -0.028269050394068383,
        ],
        _TS_B[:6],
    ],
    b=_TS_B,
    b_low=[b - e for b, e in zip(_TS_B, _TS_ERR, strict=True)],
    fsal=True,
)

# Fehlberg's RKF1(2) with the second-order solution propagated (as torchdiffeq's fehlberg2).
# Not FSAL: its last stage is f at the first-order solution, so each step starts with a fresh
# f(t, y) (torchdiffeq reuses the last stage instead, one evaluation cheaper and less exact).
# Dense output: cubic through y0, f0, the midpoint value y0 + h/2 k_1 and y1.
FEHLBERG2 = _tableau(
    "fehlberg2",
    2,
    c=[0, 1 / 2, 1],
    a=[[1 / 2], [1 / 256, 255 / 256]],
    b=[1 / 512, 255 / 256, 1 / 512],
    b_low=[1 / 256, 255 / 256, 0],
    mid=[0, 1 / 2, 0],
)

# Dormand–Prince 8(5,3) (DOP853; Hairer, Nørsett & Wanner, Solving ODEs I, II.10), in FSAL form
# (a 13th stage f(t1, y1)). Step control uses its 5th-order embedded error estimate (local
# error ~ h**6; Hairer also blends in a 3rd-order one). Dense output: quartic through y0, y1,
# f0, f1 and an order-4 midpoint value (DOP853's own 7th-order dense output needs 3 more
# stages). torchdiffeq's "dopri8" is a different 8th-order Dormand–Prince pair (RK8(7)13M).
_D8_C = [
    0.0, 0.05260015195876773, 0.0789002279381516, 0.1183503419072274, 0.2816496580927726,
    0.3333333333333333, 0.25, 0.3076923076923077, 0.6512820512820513, 0.6, 0.8571428571428571,
    1.0, 1.0,
]  # fmt: skip
_D8_A = [
    [0.05260015195876773],
    [0.0197250569845379, 0.0591751709536137],
    [0.02958758547680685, 0.0, 0.08876275643042054],
    [0.2413651341592667, 0.0, -0.8845494793282861, 0.924834003261792],
    [0.037037037037037035, 0.0, 0.0, 0.17082860872947386, 0.12546768756682242],
    [0.037109375, 0.0, 0.0, 0.17025221101954405, 0.06021653898045596, -0.017578125],
    [
        0.03709200011850479, 0.0, 0.0, 0.17038392571223998, 0.10726203044637328,
        -0.015319437748624402, 0.008273789163814023,
    ],
    [
        0.6241109587160757, 0.0, 0.0, -3.3608926294469414, -0.868219346841726, 27.59209969944671,
        20.154067550477894, -43.48988418106996,
    ],
    [
        0.47766253643826434, 0.0, 0.0, -2.4881146199716677, -0.590290826836843,
        21.230051448181193, 15.279233632882423, -33.28821096898486, -0.020331201708508627,
    ],
    [
        -0.9371424300859873, 0.0, 0.0, 5.186372428844064, 1.0914373489967295, -8.149787010746927,
        -18.52006565999696, 22.739487099350505, 2.4936055526796523, -3.0467644718982196,
    ],
    [
        2.273310147516538, 0.0, 0.0, -10.53449546673725, -2.0008720582248625, -17.9589318631188,
        27.94888452941996, -2.8589982771350235, -8.87285693353063, 12.360567175794303,
        0.6433927460157636,
    ],
]  # fmt: skip
_D8_B = [
    0.054293734116568765, 0.0, 0.0, 0.0, 0.0, 4.450312892752409, 1.8915178993145003,
    -5.801203960010585, 0.3111643669578199, -0.1521609496625161, 0.20136540080403034,
    0.04471061572777259,
]  # fmt: skip
_D8_ERR5 = [
    0.01312004499419488, 0.0, 0.0, 0.0, 0.0, -1.2251564463762044, -0.4957589496572502,
    1.6643771824549864, -0.35032884874997366, 0.3341791187130175, 0.08192320648511571,
    -0.022355307863886294, 0.0,
]  # fmt: skip
DOPRI8 = _tableau(
    "dopri8",
    8,
    c=_D8_C,
    a=[*_D8_A, _D8_B],
    b=[*_D8_B, 0.0],
    b_low=[b - e for b, e in zip([*_D8_B, 0.0], _D8_ERR5, strict=True)],
    fsal=True,
    error_order=6,
)

METHODS: dict[str, ButcherTableau] = {
    tab.name: tab
    for tab in (
        EULER,
        MIDPOINT,
        HEUN,
        HEUN3,
        RK4,
        RK4_CLASSIC,
        ADAPTIVE_HEUN,
        FEHLBERG2,
        BOSH3,
        DOPRI5,
        TSIT5,
        DOPRI8,
    )
}
ALIASES = {"heun2": "heun", "explicit_midpoint": "midpoint"}


def get_tableau(method: str) -> ButcherTableau:
    """Look a method up by its torchdiffeq-style name, with a helpful error."""
    name = ALIASES.get(method, method)
    try:
        return METHODS[name]
    except KeyError:
        known = ", ".join(sorted(METHODS))
        raise SolverConfigError(f"Unknown ODE method {method!r}. Choose one of: {known}.") from None
