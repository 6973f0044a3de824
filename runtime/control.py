"""What the training loop asks between steps: save now? stop now? has the run diverged?

:class:`RunControl` holds the run's side of Algorithm 1's loop that is not learning:

- **preemption**: SIGTERM (what clusters send before they kill a job) and SIGINT (Ctrl-C)
  only set a flag; the loop saves at the next step boundary and stops. A second stop signal
  while the first is pending stops at once, without saving (the default behaviour), with one
  exception: a SIGTERM within :data:`REPEAT_GRACE_S` seconds of a first SIGTERM is the same
  request delivered twice and is ignored. Under torchrun a rank gets the scheduler's SIGTERM
  twice when the scheduler signals every process of the job (SLURM does): once directly and
  once passed on by torchrun, which forwards the signal it gets to its ranks. A repeated
  Ctrl-C is a person's, and stops at once; under torchrun a second Ctrl-C reaches the ranks
  as a SIGTERM (torchrun's shutdown), so it too stops them at once. The handlers stay in
  place until the last checkpoint is written.
- **periodic saves** every ``train.save_every_steps`` MAE steps, next to the epoch-based ones.
- **divergence**: ``train.max_consecutive_skips`` updates in a row of the MAE or of the
  sampler skipped for non-finite values stop the run with an error, and a checkpoint is never
  written with non-finite weights: the last good one stays.
- **the summary** printed when a run ends.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from runtime.errors import RunStopped, warn

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
REPEAT_GRACE_S = 10.0  # a SIGTERM this soon after a first one is the same request, not "stop now"
_last_stop_signal: int | None = None


def exit_status_after_stop() -> int | None:
    """128 + the signal number when the last run stopped for a signal (130 Ctrl-C, 143 SIGTERM), else None."""
    return None if _last_stop_signal is None else 128 + _last_stop_signal


class RunControl:
    """Signals, periodic saves and the non-finite watch of one training run.

    :param train_cfg: the ``train`` config (``save_every_steps``, ``max_consecutive_skips``).
    :param output_dir: the run folder (named in messages).
    :param world_size: processes; with more than one, a stop is agreed by all ranks.
    :param is_main: rank 0 prints warnings and the summary.
    """

    def __init__(self, train_cfg: Any, output_dir: str | Path, *, world_size: int = 1, is_main: bool = True,
                 device: torch.device | str = "cpu") -> None:
        global _last_stop_signal
        _last_stop_signal = None
        self.save_every_steps = int(train_cfg.get("save_every_steps", 0))
        self.max_consecutive = int(train_cfg.get("max_consecutive_skips", 20))
        self.output_dir, self.world_size, self.is_main = Path(output_dir), world_size, is_main
        self.device = torch.device(device)
        self.signal_received: int | None = None
        self._received_at = 0.0  # time.monotonic() of this process's first stop signal
        self.warned: set[str] = set()
        self.started = time.perf_counter()
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)

    # ---- signals
    def _handle(self, signum: int, frame: Any) -> None:
        if self._received_at and signum == signal.SIGTERM == self.signal_received \
                and time.monotonic() - self._received_at < REPEAT_GRACE_S:
            return  # the same SIGTERM again (the scheduler's to every process, and torchrun's copy)
        if self._received_at or not self._previous:  # a second one, or after close(): stop now
            self.close()
            signal.raise_signal(signum)
            return
        self.signal_received, self._received_at = signum, time.monotonic()
        if self.is_main:
            again = ("Ctrl-C again" if signum == signal.SIGINT
                     else f"Ctrl-C, or SIGTERM again after {REPEAT_GRACE_S:.0f} s,")
            warn(f"received {signal.Signals(signum).name}: saving a checkpoint at the end of this step, then "
                 f"stopping ({again} stops at once, without saving)")

    def close(self) -> None:
        """Restore the signal handlers that were there before."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def stop_requested(self) -> bool:
        """A stop signal reached this process (or, under torchrun, any rank)."""
        global _last_stop_signal
        received = self.signal_received or 0
        if self.world_size > 1 and dist.is_initialized():
            flag = torch.tensor([float(received)], device=self.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            received = int(flag.item())
        if received:
            self.signal_received = received
            _last_stop_signal = received
        return bool(received)

    # ---- periodic saves
    def save_due(self, step: int, n_steps: int) -> bool:
        """A ``save_every_steps`` multiple was passed by the ``n_steps`` that ended at ``step``."""
        return self.save_every_steps > 0 and step % self.save_every_steps < n_steps

    # ---- divergence
    def after_step(self, step: int, mae_optimizer: Any, agent: Any) -> None:
        """Warn at the first skipped update of the MAE (``mae_optimizer``, None for a frozen MAE) and of
        the sampler; stop after too many in a row.

        :raises RunStopped: ``max_consecutive_skips`` skipped in a row (the run has diverged).
        """
        streams = [("sampler", "policy", agent.guard.total, agent.guard.consecutive,
                    "agent.lr, or set agent.max_grad_norm")]
        if mae_optimizer is not None:  # None: a frozen MAE, which takes no step
            streams.insert(0, ("MAE", "mae", mae_optimizer.guard.total, mae_optimizer.guard.consecutive,
                               "train.lr / train.blr, or set train.clip_grad"))
        for name, prefix, total, consecutive, remedy in streams:
            if total and prefix not in self.warned:
                self.warned.add(prefix)
                if self.is_main:
                    stop = (f"the run stops after {self.max_consecutive} in a row (train.max_consecutive_skips)"
                            if self.max_consecutive else "train.max_consecutive_skips=0: the run never stops for it")
                    warn(f"step {step}: an update of the {name} was skipped (non-finite loss, gradient or weight); "
                         f"skipped updates are counted in {prefix}/skipped_nonfinite; {stop}")
            if self.max_consecutive and consecutive >= self.max_consecutive:
                self.close()
                raise RunStopped(f"the run diverged: {consecutive} updates of the {name} in a row were skipped "
                                 f"for non-finite values (step {step}); {self.last_good()}; lower {remedy}, and start "
                                 "a new run (a resume keeps the stored learning rates)")

    def check_finite(self, step: int, *modules: Any) -> None:
        """Refuse to save non-finite weights.

        :raises RunStopped: a parameter or buffer of ``modules`` is NaN or infinite.
        """
        for module in modules:
            if module is None:
                continue
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                    self.close()
                    raise RunStopped(f"the run diverged: {type(module).__name__} weight {name} is not finite at step "
                                     f"{step}, so no checkpoint was written; {self.last_good()}; lower the learning "
                                     "rate (train.lr, agent.lr) or set train.clip_grad")

    def last_good(self) -> str:
        from runtime import checkpoint

        path = checkpoint.latest_checkpoint(self.output_dir)
        if path is None:
            return f"no checkpoint had been written in {self.output_dir}"
        try:
            step = checkpoint.load(path, mmap=True).get("step")
        except Exception:  # noqa: BLE001 - the message only names it
            step = "?"
        return f"the last good checkpoint is {path} (step {step})"

    # ---- the end
    def summary(self, *, step: int, total_steps: int, policy_updates: int, last: dict[str, float],
                writer_dir: str | Path | None = None) -> str:
        """A paragraph on the run (printed by rank 0 and appended to ``output_dir/train_joint.log``)."""
        minutes = (time.perf_counter() - self.started) / 60
        stopped = ""
        if self.signal_received and _last_stop_signal:  # not a signal during the last save of a finished run
            stopped = (f" Stopped by {signal.Signals(self.signal_received).name} at step {step} of {total_steps}; "
                       "continue it with resume=true.")
        loss = last.get("mae/loss", float("nan"))
        heldout = last.get("mae/heldout_loss")
        text = (f"Run summary: {step} of {total_steps} MAE steps and {policy_updates} sampler cycles in "
                f"{minutes:.1f} min this session; last MAE loss {loss:.4f}"
                + (f", held-out {heldout:.4f}" if heldout is not None else "")
                + f"; skipped for non-finite values: {int(last.get('mae/skipped_nonfinite', 0))} MAE and "
                f"{int(last.get('policy/skipped_nonfinite', 0))} sampler updates; unreadable videos skipped: "
                f"{int(last.get('env/skipped_videos', 0))}. Checkpoint {self.output_dir / 'checkpoint-latest.pt'}, "
                f"config {self.output_dir / 'config.yaml'}, TensorBoard logs {writer_dir or self.output_dir / 'tb'}."
                + stopped)
        if self.is_main:
            print(text, flush=True)
            with open(self.output_dir / "train_joint.log", "a", encoding="utf-8") as handle:  # one per session
                handle.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
        return text
