"""A tiny irregular batch shared by the forecasting-model tests."""

import torch


def ragged_batch() -> dict:
    """Two series with different numbers and times of observations and targets."""
    return {
        "obs_t": torch.tensor([[0.1, 0.3, 0.6], [0.2, 0.5, 0.5]]),
        "obs_x": torch.randn(2, 3, 2),
        "obs_mask": torch.tensor([[True, True, True], [True, True, False]]),
        "target_t": torch.tensor([[0.8, 1.0], [0.7, 0.7]]),
        "target_x": torch.randn(2, 2, 2),
        "target_mask": torch.tensor([[True, True], [True, False]]),
    }
