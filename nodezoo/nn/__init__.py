"""Building blocks: ODE blocks, vector fields, reversible blocks, recurrent cells."""

from .fields import AugmentChannels, ConcatConv2d, ConvODEField, MLPField, group_norm
from .ode_block import ODEBlock
from .reversible import ReversibleBlock, ReversibleSequence

__all__ = [
    "AugmentChannels",
    "ConcatConv2d",
    "ConvODEField",
    "MLPField",
    "ODEBlock",
    "ReversibleBlock",
    "ReversibleSequence",
    "group_norm",
]
