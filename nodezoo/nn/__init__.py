"""Building blocks: ODE blocks (and their regularisers), vector fields, reversible blocks,
recurrent cells."""

from .fields import AugmentChannels, ConcatConv2d, ConvODEField, MLPField, group_norm
from .ode_block import ODEBlock, configure_regularisation, regularisation_loss
from .recurrent import BATCH_KEYS, BackwardEncoder, ODERNNCell
from .regularisation import RegularisationConfig
from .reversible import ReversibleBlock, ReversibleSequence

__all__ = [
    "BATCH_KEYS",
    "AugmentChannels",
    "BackwardEncoder",
    "ConcatConv2d",
    "ConvODEField",
    "MLPField",
    "ODEBlock",
    "ODERNNCell",
    "RegularisationConfig",
    "ReversibleBlock",
    "ReversibleSequence",
    "configure_regularisation",
    "group_norm",
    "regularisation_loss",
]
