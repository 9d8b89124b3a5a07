"""Data loaders whose training data resumes exactly where a stopped run stopped.

Why: Lightning resumes a fit from a mid-epoch ``last.ckpt`` by starting that epoch's data over
with a fresh shuffle and training on as many batches as the epoch has left (it warns: "your
dataloader is not resumable"), so the resumed epoch sees some images twice and others not at all,
with other random crops than the uninterrupted run would have drawn. Here:

- ``TrainingOrder`` orders epoch ``e`` by a permutation seeded by ``(seed, e)`` (the same on
  every rank; under DDP each rank takes every world-th item, as ``DistributedSampler``, which it
  is, so Lightning leaves it in place) and, inside a fit, reads from the trainer which epoch it
  is and how many batches of it were already trained, and starts after them;
- ``SeededItems`` makes every random draw while loading item ``i`` of epoch ``e`` (random crops
  and flips, dequantisation noise) come from the CPU generator seeded by ``(seed, e, i)``, so an
  item is the same in any run, process or worker;
- every loader draws its workers' seeds from its own generator, not from torch's global one, so
  building a loader (once more on resume) does not shift the model's random draws.

With the model's random state in the checkpoint as well (``nodezoo.callbacks.RandomState``, which
``nodezoo fit`` adds), a run killed and resumed ends with the same weights as one that never
stopped (``tests/data/test_resume.py``). One condition: the fit must build its training iterator
after the checkpoint is restored. ``trainer.estimated_stepping_batches`` called from
``configure_optimizers`` builds it before (Lightning issue #20550), so nodezoo's models count
their schedule's steps with ``nodezoo.models.schedule.planned_optimizer_steps``; a model of
yours that asks Lightning resumes its epoch from the start, as without this module.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, DistributedSampler

Position = Callable[[], "tuple[int, int] | None"]


def fit_position(trainer) -> tuple[int, int] | None:
    """``(epoch, batches of it already trained)`` of a fit about to read its training data (also
    right after restoring a checkpoint); ``None`` outside a fit."""
    if trainer is None or trainer.state.fn != "fit":
        return None
    loop = trainer.fit_loop
    return loop.epoch_progress.current.processed, loop.epoch_loop.batch_progress.current.processed


class TrainingOrder(DistributedSampler):
    """Keys ``(epoch, index)`` of one epoch of training items for this rank, in the epoch's
    seeded order, from where the fit stands (see the module docstring). ``batch_size``: items
    per batch (1 when each item is a batch). Outside a fit (no ``position``, or it says None)
    each pass is the next epoch from its beginning, from ``set_epoch``'s epoch on (default 0), so
    a plain loop over the loader reshuffles every pass."""

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        seed: int,
        shuffle: bool = True,
        position: Position | None = None,
    ):
        super().__init__(dataset, num_replicas=1, rank=0, shuffle=shuffle, seed=seed)
        self.batch_size = batch_size
        self.position = position
        self._follow_processes()

    def _follow_processes(self) -> None:
        """This process's share: all of it alone, every world-th item under DDP (the loader may
        have been built before the process group started)."""
        ready = dist.is_available() and dist.is_initialized()
        world, rank = (dist.get_world_size(), dist.get_rank()) if ready else (1, 0)
        if (world, rank) != (self.num_replicas, self.rank):
            self.num_replicas, self.rank = world, rank
            self.num_samples = math.ceil(len(self.dataset) / world)
            self.total_size = self.num_samples * world

    def __len__(self) -> int:
        self._follow_processes()
        return super().__len__()

    def __iter__(self):
        self._follow_processes()
        where = self.position() if self.position is not None else None
        epoch, done = (self.epoch, 0) if where is None else where
        self.epoch = epoch  # DistributedSampler's permutation reads it
        keys = [(epoch, i) for i in super().__iter__()]
        if where is None:
            self.epoch = epoch + 1  # a plain loop's next pass is the next epoch
        if done * self.batch_size >= len(keys):  # a checkpoint at the epoch's last batch
            done = 0
        return iter(keys[done * self.batch_size :])


def _item_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 1_000_003 + epoch) * 998_244_353 + index) % (2**63)


class SeededItems(Dataset):
    """``dataset[index]`` for a key ``(epoch, index)``, with torch's CPU generator seeded by
    ``(seed, epoch, index)`` while it loads (and put back after), so its random draws are a
    function of the key alone. Plain integer keys (evaluation) load without seeding."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        if not isinstance(key, tuple):
            return self.dataset[key]
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(_item_seed(self.seed, epoch, index))
            return self.dataset[index]


class ResumableLoader(DataLoader):
    """A ``DataLoader`` that says it resumes: Lightning warns "your dataloader is not resumable"
    on a mid-epoch resume unless the loader has ``state_dict``/``load_state_dict``. Its
    ``TrainingOrder`` reads where the fit stands from the trainer, so it keeps no state itself."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        pass


def training_loader(
    dataset: Dataset,
    datamodule,
    *,
    batch_size: int | None,
    seed: int,
    shuffle: bool = True,
    seed_items: bool = True,
    **loader_args,
) -> DataLoader:
    """The training loader of ``datamodule`` over ``dataset``: ``TrainingOrder`` batches of
    ``batch_size`` (``None``: each item is already a batch) that follow the fit of the trainer
    the data module is attached to; with ``seed_items`` its items load through ``SeededItems``,
    else ``dataset`` receives the ``(epoch, index)`` keys itself."""
    position = lambda: fit_position(datamodule.trainer)
    order = TrainingOrder(dataset, batch_size or 1, seed, shuffle=shuffle, position=position)
    return ResumableLoader(
        SeededItems(dataset, seed) if seed_items else dataset,
        batch_size=batch_size,
        sampler=order,
        generator=torch.Generator().manual_seed(seed),
        **loader_args,
    )


def evaluation_loader(dataset: Dataset, *, batch_size: int, seed: int, **loader_args) -> DataLoader:
    """A loader in the data's order whose worker seeds come from its own generator."""
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        generator=torch.Generator().manual_seed(seed),
        **loader_args,
    )
