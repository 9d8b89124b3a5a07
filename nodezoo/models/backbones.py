"""The image-classifier backbones of Chen et al. (2018), Table 1, built by one mechanism.

Every conv backbone is the paper's downsampling stem, a feature stage, and a pooling neck
(GN-ReLU-global average pool); only the stage differs:

- ``odenet``: one ODE block (``ConvODEField``) solved by dopri5 at rtol = atol = 1e-3 with
  adjoint gradients: O(1) activation memory.
- ``rknet``: the same field and solver, but gradients backpropagated through the solver's
  operations (the paper's RK-Net: same architecture, memory O(NFE)). For a fixed-grid RK-Net
  pass e.g. ``solver={"method": "rk4", "step_size": 0.25}``.
- ``resnet``: ``depth`` pre-activation residual blocks.
- ``revnet``: ``depth`` reversible blocks whose F and G are the same residual function on half
  the channels each, run by ``ReversibleSequence`` (activation memory O(1) in depth).
- ``mlp``: the paper's 1-layer MLP baseline (no stem): flatten - Linear - ReLU; ``width`` is
  its hidden size (the paper's 0.24M-parameter baseline is ``width=300``).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..nn import AugmentChannels, ConvODEField, ODEBlock, ReversibleBlock, ReversibleSequence
from ..nn.fields import group_norm
from ..solvers import SolverConfig

BACKBONES = ("odenet", "rknet", "resnet", "revnet", "mlp")
ODE_BACKBONES = ("odenet", "rknet")
DEFAULT_SOLVERS = {
    "odenet": SolverConfig(method="dopri5", rtol=1e-3, atol=1e-3, gradient="adjoint"),
    "rknet": SolverConfig(method="dopri5", rtol=1e-3, atol=1e-3, gradient="backprop"),
}
MIN_IMAGE_SIZE = 6  # the stem's valid 3x3 conv and two stride-2 convs need 6 pixels


def resolve_solver(backbone: str, solver: dict | SolverConfig | None) -> SolverConfig | None:
    """The backbone's default solver with the given settings laid over it (a partial dict such
    as ``{"backend": "torchdiffeq"}`` keeps the rest of the default); ``None`` for backbones
    without an ODE."""
    check_backbone(backbone)
    if backbone not in ODE_BACKBONES:
        if solver is not None:
            raise ValueError(
                f"solver settings apply only to {' and '.join(ODE_BACKBONES)}; "
                f"backbone={backbone!r} has no ODE, so leave solver unset."
            )
        return None
    if isinstance(solver, SolverConfig):
        return solver
    if solver is not None and not isinstance(solver, dict):
        raise TypeError(f"solver must be a dict or SolverConfig, got {type(solver).__name__}.")
    return SolverConfig.from_dict({**DEFAULT_SOLVERS[backbone].to_dict(), **(solver or {})})


def check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"backbone={backbone!r} is not one of {', '.join(BACKBONES)}.")


def conv_stem(in_channels: int, width: int) -> nn.Module:
    """The paper's downsampling stem: 28x28 -> 6x6 (valid 3x3 conv, two 4x4 stride-2 convs)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1),
        group_norm(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 4, 2, 1),
        group_norm(width),
        nn.ReLU(),
        nn.Conv2d(width, width, 4, 2, 1),
    )


def preact_residual_fn(channels: int) -> nn.Module:
    """GN-ReLU-conv3x3-GN-ReLU-conv3x3: the residual branch of ResNet and RevNet blocks."""
    return nn.Sequential(
        group_norm(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, 1, 1),
        group_norm(channels),
        nn.ReLU(),
        nn.Conv2d(channels, channels, 3, 1, 1),
    )


class ResidualBlock(nn.Module):
    """``x + fn(x)`` with a pre-activation branch."""

    def __init__(self, channels: int):
        super().__init__()
        self.fn = preact_residual_fn(channels)

    def forward(self, x):
        return x + self.fn(x)


def pooling_neck(channels: int) -> nn.Module:
    """GN-ReLU-global average pool-flatten: turns feature maps into ``(B, channels)``."""
    return nn.Sequential(group_norm(channels), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _ode_stage(width, depth, solver, augment_channels):
    field = ConvODEField(width, augment_channels=augment_channels)
    return nn.Sequential(AugmentChannels(augment_channels), ODEBlock(field, solver=solver))


def _resnet_stage(width, depth, solver, augment_channels):
    return nn.Sequential(*(ResidualBlock(width) for _ in range(depth)))


def _revnet_stage(width, depth, solver, augment_channels):
    if width % 2:
        raise ValueError(f"revnet splits the channels in two; width must be even, got {width}.")
    half = width // 2
    blocks = [
        ReversibleBlock(preact_residual_fn(half), preact_residual_fn(half)) for _ in range(depth)
    ]
    return ReversibleSequence(blocks)


# A conv stage maps (B, width, h, w) to (B, width + augment_channels, h, w).
CONV_STAGES: dict[str, Callable[..., nn.Module]] = {
    "odenet": _ode_stage,
    "rknet": _ode_stage,
    "resnet": _resnet_stage,
    "revnet": _revnet_stage,
}


def build_backbone(
    backbone: str,
    in_channels: int,
    image_size: int,
    width: int,
    depth: int,
    solver: SolverConfig | None,
    augment_channels: int = 0,
) -> tuple[nn.Module, int]:
    """The feature extractor ``images -> (B, num_features)`` and its ``num_features``."""
    check_backbone(backbone)
    if min(in_channels, image_size, width) < 1:
        raise ValueError(
            f"in_channels, image_size and width must be positive, got "
            f"{in_channels}, {image_size}, {width}."
        )
    if augment_channels and backbone not in ODE_BACKBONES:
        raise ValueError(
            f"augment_channels widens an ODE state; backbone={backbone!r} has none "
            f"(use {' or '.join(ODE_BACKBONES)}, or augment_channels=0)."
        )
    if augment_channels < 0:
        raise ValueError(f"augment_channels must be >= 0, got {augment_channels}.")
    if backbone == "mlp":
        features = nn.Sequential(
            nn.Flatten(), nn.Linear(in_channels * image_size**2, width), nn.ReLU()
        )
        return features, width
    if image_size < MIN_IMAGE_SIZE:
        raise ValueError(
            f"The conv stem needs images of at least {MIN_IMAGE_SIZE}x{MIN_IMAGE_SIZE}, "
            f"got image_size={image_size}."
        )
    if backbone in ("resnet", "revnet") and depth < 1:
        raise ValueError(f"depth must be >= 1 for {backbone}, got {depth}.")
    num_features = width + augment_channels
    stage = CONV_STAGES[backbone](width, depth, solver, augment_channels)
    features = nn.Sequential(conv_stem(in_channels, width), stage, pooling_neck(num_features))
    return features, num_features
