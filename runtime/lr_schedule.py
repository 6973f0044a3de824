"""VideoMAE's learning-rate schedule, per optimiser step, for every training entry point.

Pretraining (``train_joint.py``), fine-tuning (``downstream.finetune``) and linear probing
(``downstream.linear_probe``) all build their schedule here, as VideoMAE's
``run_mae_pretraining.py`` and ``run_class_finetuning.py`` do:

1. **Scaling.** Three values: the peak, the floor and the start of the warm-up. Each is given
   either as a *base* value (``blr``, ``min_blr``, ``warmup_blr``), multiplied by
   ``total_batch / 256`` (VideoMAE scales ``lr``, ``min_lr`` and ``warmup_lr`` this way), or as
   an *absolute* value (``lr``, ``min_lr``, ``warmup_lr``), used as it is. An absolute value,
   when set, wins over its base one.
2. **Shape.** VideoMAE's ``utils.cosine_scheduler``: ``W`` warm-up steps linear from the
   warm-up start to the peak, both ends included; then ``n = S - W`` cosine steps,
   ``value(i) = floor + (peak - floor) * (1 + cos(pi * i / n)) / 2`` for ``i = 0 .. n-1``; ``S``
   values in all, one per optimiser step of the whole run. The last step's value is the
   floor to within ``(peak - floor) * pi**2 / (4 n**2)``.
3. **Application.** Before optimiser step ``t`` (0-based), every parameter group gets
   ``value(t) * group["lr_scale"]`` (``lr_scale`` = 1 unless layer-wise decay set it).

VideoMAE's pretraining and fine-tuning never pass their (scaled) ``warmup_lr`` to the
scheduler, so their warm-up starts at 0: ``warmup_blr`` defaults to 0 to match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from runtime.errors import ConfigError

PAPER_TOTAL_BATCH = 256
"""The paper's pretraining total batch (8 GPUs x 32 clips), and the reference of VideoMAE's lr scaling."""


@dataclass(frozen=True)
class LearningRates:
    """The three values of a schedule after scaling, and where each came from."""

    peak: float
    floor: float
    warmup_start: float
    total_batch: int
    sources: dict[str, str]
    """For each of peak, floor, warmup_start: ``"absolute"`` or ``"base x total_batch / 256"``."""

    @property
    def scaled(self) -> bool:
        """Whether any of the three values was scaled by ``total_batch / 256``."""
        return any(source != "absolute" for source in self.sources.values())

    def describe(self, name: str = "lr", paper_total_batch: int | None = None) -> str:
        """One line for the start of a run: the values and where each came from; with
        ``paper_total_batch``, a note when this run's total batch differs from the paper's."""
        def show(key: str, value: float) -> str:
            return f"{value:.4g} ({self.sources[key]})"

        line = (f"{name}: peak {show('peak', self.peak)}, floor {show('floor', self.floor)}, "
                f"warm-up from {show('warmup_start', self.warmup_start)}")
        if paper_total_batch is not None and self.total_batch != paper_total_batch:
            line += (f"; note: the total batch is {self.total_batch}, not the paper's {paper_total_batch}, so the "
                     f"peak lr is {self.peak:.4g}" + (f" (the paper's: {self.peak * paper_total_batch / self.total_batch:.4g})"
                                                     if self.sources["peak"] != "absolute" else " (absolute)"))
        return line


def learning_rates(train: Any, total_batch: int) -> LearningRates:
    """Resolve a config's ``train`` section into the schedule's three values.

    Reads ``lr``/``blr``, ``min_lr``/``min_blr`` and ``warmup_lr``/``warmup_blr``: an absolute
    value (not None) is used as it is, else the base value times ``total_batch / 256``.

    Raises:
        runtime.errors.ConfigError: the floor is above the peak, or a value is negative.
    """
    if total_batch <= 0:
        raise ConfigError(f"the total batch must be positive, got {total_batch}")
    scale = total_batch / PAPER_TOTAL_BATCH
    values, sources = {}, {}
    for key, absolute, base in (("peak", "lr", "blr"), ("floor", "min_lr", "min_blr"),
                                ("warmup_start", "warmup_lr", "warmup_blr")):
        given = train.get(absolute) if hasattr(train, "get") else getattr(train, absolute, None)
        if given is not None:
            values[key], sources[key] = float(given), "absolute"
        else:
            base_value = train.get(base) if hasattr(train, "get") else getattr(train, base)
            values[key] = float(base_value) * scale
            sources[key] = f"{base} {float(base_value):g} x {total_batch} / {PAPER_TOTAL_BATCH}"
        if values[key] < 0:
            raise ConfigError(f"train.{absolute} resolves to {values[key]:g}: learning rates must be >= 0")
    if values["floor"] > values["peak"]:
        raise ConfigError(
            f"the cosine floor (train.min_lr/min_blr: {values['floor']:.4g}, {sources['floor']}) is above the peak "
            f"learning rate (train.lr/blr: {values['peak']:.4g}, {sources['peak']}): the schedule would rise "
            "instead of decay; lower the floor or raise the peak")
    return LearningRates(values["peak"], values["floor"], values["warmup_start"], total_batch, sources)


def cosine_values(peak: float, floor: float, total_steps: int, warmup_steps: int = 0,
                  warmup_start: float = 0.0) -> np.ndarray:
    """VideoMAE's ``cosine_scheduler`` in steps: ``(total_steps,)`` float64, one value per optimiser step.

    Raises:
        ValueError: ``total_steps < 1`` or ``warmup_steps`` outside ``[0, total_steps]``.
    """
    if total_steps < 1:
        raise ValueError(f"a schedule needs at least one step, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"warmup_steps must be in [0, {total_steps}], got {warmup_steps}")
    warmup = np.linspace(warmup_start, peak, warmup_steps)
    n = total_steps - warmup_steps
    i = np.arange(n, dtype=np.float64)
    cosine = floor + 0.5 * (peak - floor) * (1.0 + np.cos(math.pi * i / max(n, 1)))
    return np.concatenate([warmup, cosine])


class StepSchedule:
    """Sets every parameter group's lr before each optimiser step, from a precomputed table.

    ``step_update(t)`` prepares optimiser step ``t`` (0-based): the number of updates done so
    far (the call convention of timm's schedulers, so it drops in for them). Construction
    prepares step 0. Past the table's end the last value holds.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, values: np.ndarray, rates: LearningRates,
                 warmup_steps: int = 0):
        self.optimizer, self.values, self.rates = optimizer, np.asarray(values, dtype=np.float64), rates
        self.warmup_steps = warmup_steps
        self.step_update(0)

    def describe(self, name: str = "lr", paper_total_batch: int | None = None) -> str:
        """One plain sentence for the start of a run (where each value came from: :meth:`LearningRates.describe`,
        the run's config.yaml), and the note when the total batch is not the paper's."""
        rates = self.rates
        rise = (f"rises from {rates.warmup_start:.3g} to {rates.peak:.3g} over {self.warmup_steps} steps, then "
                if self.warmup_steps else f"starts at {rates.peak:.3g} and ")
        line = f"{name} {rise}falls along a cosine to {rates.floor:.3g} at step {len(self.values)}."
        if paper_total_batch is not None and rates.total_batch != paper_total_batch:
            line += (f" Note: the total batch is {rates.total_batch}, not the paper's {paper_total_batch}, so the "
                     f"peak lr is {rates.peak:.4g}" + (f" (the paper's: {rates.peak * paper_total_batch / rates.total_batch:.4g})."
                                                      if rates.sources["peak"] != "absolute" else " (absolute)."))
        return line

    def __len__(self) -> int:
        return len(self.values)

    def value(self, step: int) -> float:
        """The unscaled lr of optimiser step ``step`` (0-based)."""
        return float(self.values[min(max(step, 0), len(self.values) - 1)])

    def step_update(self, num_updates: int) -> None:
        value = self.value(num_updates)
        for group in self.optimizer.param_groups:
            group["lr"] = value * group.get("lr_scale", 1.0)

    def state_dict(self) -> dict[str, Any]:
        return {"num_steps": len(self.values)}  # the table follows from the config; nothing else to keep

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Nothing to restore (the caller calls ``step_update`` with the restored step count)."""


def build_schedule(optimizer: torch.optim.Optimizer, train: Any, *, total_batch: int, total_steps: int,
                   steps_per_epoch: float) -> StepSchedule:
    """The schedule of a run: values from ``train`` (see :func:`learning_rates`), warm-up
    ``int(train.warmup_epochs * steps_per_epoch)`` steps (at most ``total_steps``), then cosine
    to the floor over the rest of ``total_steps`` optimiser steps."""
    rates = learning_rates(train, total_batch)
    warmup_steps = min(int(train.warmup_epochs * steps_per_epoch), total_steps)
    values = cosine_values(rates.peak, rates.floor, total_steps, warmup_steps, rates.warmup_start)
    return StepSchedule(optimizer, values, rates, warmup_steps)
