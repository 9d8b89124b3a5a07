"""Building blocks: ODE blocks, vector fields, reversible blocks, recurrent cells."""

from .ode_block import ODEBlock

__all__ = ["ODEBlock"]
