"""An endless, resumable stream of clip batches: the environment's data source.

Each epoch is a fresh shuffle drawn from ``(seed, epoch)``, split evenly across ranks
(every rank gets the same number of batches, so distributed ranks never wait on each
other), cut into full batches. The position (epoch, batch) is the whole state, so a
resumed run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import atexit
import gc
import multiprocessing
import signal
import weakref
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from data.video_dataset import report_unreadable, restore_unreadable, unreadable_videos
from runtime.errors import UserError, warn


class NotEnoughClipsError(UserError, ValueError):
    """The data has fewer clips than one batch on each rank."""


def _absorb_first_sigterm(signum: int, frame: Any) -> None:
    """A worker's first SIGTERM: ignored; the next one stops it (the default again)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _leave_stop_signals_to_the_main_process(worker_id: int) -> None:
    """A DataLoader worker's ``worker_init_fn``: stop signals sent to the whole process group are
    the main process's to act on.

    Ctrl-C (which a terminal sends to every process of the foreground group) is ignored. The first
    SIGTERM (which a scheduler sends to every process of a job before it kills it) is absorbed: the
    main process finishes its step, which may need more batches, saves, and then shuts its workers
    down itself. A later SIGTERM (the DataLoader's or multiprocessing's ``terminate()``, or the
    scheduler insisting) stops the worker as by default.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _absorb_first_sigterm)


_live_sources: weakref.WeakSet = weakref.WeakSet()
"""ClipSources whose data-loading workers are running, closed at exit."""
_exit_hook_registered = False


def _close_live_sources() -> None:
    """Stop every ClipSource's workers the DataLoader's clean way (done event, end-of-work message).

    Runs at interpreter exit before torch's own exit hook (registered later, so it runs first): once
    torch's has run, a DataLoader left alive at exit no longer stops its workers itself, and
    multiprocessing's ``terminate()`` would be the first SIGTERM a worker sees, which it absorbs.
    """
    for source in list(_live_sources):
        source.close()


def _track(source: ClipSource) -> None:
    global _exit_hook_registered
    if not _exit_hook_registered:
        atexit.register(_close_live_sources)
        _exit_hook_registered = True
    _live_sources.add(source)


class ClipSource:
    """Batches of ``batch_size`` clips, forever.

    :param dataset: items are dicts with at least ``video`` ``(3, T, H, W)``, ``label``,
        ``index`` and ``skipped`` (see :mod:`data`).
    :param batch_size: clips per batch on this rank.
    :param seed: shuffles are drawn from ``(seed, epoch)``.
    :param num_workers: DataLoader worker processes.
    :param rank: this process's rank; ``world_size`` ranks share each epoch's shuffle.
    :param device: where tensors of a batch are moved.
    """

    def __init__(self, dataset: Dataset, batch_size: int, *, seed: int = 0, num_workers: int = 0,
                 rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu", shuffle: bool = True):
        per_rank = len(dataset) // world_size
        if per_rank < batch_size:
            raise NotEnoughClipsError(
                f"batch_size={batch_size} per rank needs at least {batch_size * world_size} clips, "
                f"the data has {len(dataset)}: lower train.batch_size or give more videos"
            )
        self.dataset, self.batch_size = dataset, batch_size
        if hasattr(dataset, "report_in_items"):  # unreadable videos: one warning per file per run
            dataset.report_in_items = True
        self.num_workers, self.rank, self.world_size = num_workers, rank, world_size
        self.device, self.shuffle = torch.device(device), shuffle
        self.steps_per_epoch = per_rank // batch_size
        self.base_seed = seed
        self.epoch, self.batch_in_epoch = 0, 0
        self._iterator = None
        self._workers: list[Any] = []  # the current iterator's worker processes

    def seed(self, seed: int) -> None:
        """Restart the stream at epoch 0 with a new seed."""
        self.close()
        self.base_seed, self.epoch, self.batch_in_epoch = seed, 0, 0

    def _epoch_seed(self) -> int:
        return self.base_seed * 100_003 + self.epoch

    def _epoch_batches(self) -> list[list[int]]:
        n = len(self.dataset)
        if self.shuffle:
            order = torch.randperm(n, generator=torch.Generator().manual_seed(self._epoch_seed()))
        else:
            order = torch.arange(n)
        mine = order[self.rank :: self.world_size][: self.steps_per_epoch * self.batch_size]
        return mine.reshape(self.steps_per_epoch, self.batch_size).tolist()

    def _start_epoch(self) -> None:
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.epoch)
        batches = self._epoch_batches()[self.batch_in_epoch :]
        # Own generator: worker seeds come from (seed, epoch), not from the global RNG, so
        # starting an epoch neither consumes nor depends on the policy's random state.
        loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                            pin_memory=self.device.type == "cuda",
                            worker_init_fn=_leave_stop_signals_to_the_main_process,
                            generator=torch.Generator().manual_seed(self._epoch_seed() + 1))
        before = set(multiprocessing.active_children())
        self._iterator = iter(loader)  # starts the workers
        self._workers = [child for child in multiprocessing.active_children() if child not in before]
        if self._workers:
            _track(self)

    def close(self) -> None:
        """Stop the data-loading workers now (the next batch starts them again).

        The DataLoader has no public stop: its iterator stops its workers cleanly when the last
        reference to it goes (``__del__``), so this drops ours and checks that they are gone.
        """
        iterator, workers = self._iterator, self._workers
        self._iterator, self._workers = None, []
        _live_sources.discard(self)
        if not workers:
            return
        collected = weakref.ref(iterator)
        del iterator
        if collected() is not None:  # held in a reference cycle: collect it now
            gc.collect()
        for worker in workers:
            worker.join(timeout=10)
        alive = [worker.pid for worker in workers if worker.is_alive()]
        if alive:
            warn(f"data-loading workers {alive} are still running: something else holds their DataLoader iterator")

    def next_batch(self) -> dict[str, Any]:
        if self.batch_in_epoch >= self.steps_per_epoch:
            self.close()
            self.epoch, self.batch_in_epoch = self.epoch + 1, 0
        if self._iterator is None:
            self._start_epoch()
        batch = next(self._iterator)
        self.batch_in_epoch += 1
        if "unreadable" in batch:
            report_unreadable(batch.pop("unreadable"))
        return {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}

    def unreadable_count(self) -> int:
        """The dataset's videos known to be unreadable (0 for data that cannot be unreadable)."""
        count = getattr(self.dataset, "unreadable_count", None)
        return count() if count is not None else 0

    def state_dict(self) -> dict[str, Any]:
        """The position in the stream, and the videos found unreadable so far (a resumed run skips
        them as the uninterrupted one does, drawing no random numbers for them)."""
        return {"seed": self.base_seed, "epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch,
                "unreadable": unreadable_videos()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_seed, self.epoch, self.batch_in_epoch = state["seed"], state["epoch"], state["batch_in_epoch"]
        restore_unreadable(state.get("unreadable", {}))  # absent in checkpoints from before it was kept
        self.close()
