"""LightningModules: image classifiers and latent-ODE time-series models (one family per file)."""

from .classifier import ImageClassifier
from .cnf import CNF
from .latent_ode import LatentODE
from .rnn_baseline import RNNBaseline

__all__ = ["CNF", "ImageClassifier", "LatentODE", "RNNBaseline"]
