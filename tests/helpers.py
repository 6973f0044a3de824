"""Small shared test fixtures: a tiny MAE, an in-memory clip dataset, a free port for torchrun."""

import socket

import torch
from torch.utils.data import Dataset

import mae

TINY_MAE = dict(img_size=32, num_frames=4, embed_dim=32, depth=1, num_heads=2,
                decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)


def tiny_mae(seed: int = 0) -> mae.PretrainVideoMAE:
    torch.manual_seed(seed)
    return mae.create_model("tiny", **TINY_MAE)


class RandomClips(Dataset):
    """Deterministic random clips ``(3, 4, 32, 32)``: item i is drawn from seed i."""

    def __init__(self, num_clips: int = 16, frames: int = 4, size: int = 32):
        self.num_clips, self.frames, self.size = num_clips, frames, size

    def __len__(self):
        return self.num_clips

    def __getitem__(self, index):
        g = torch.Generator().manual_seed(index)
        video = torch.randn(3, self.frames, self.size, self.size, generator=g)
        return {"video": video, "label": index % 3, "index": index, "skipped": 0}


def collect_steps(agent, env, *, capacity: int, n_step: int = 8):
    """Collect ``n_step`` transitions of ``agent`` in ``env`` through Tianshou into a fresh
    ``VectorReplayBuffer`` of ``capacity``; returns the buffer."""
    from tianshou.data import Collector, VectorReplayBuffer

    from envs import TianshouVectorEnv

    adapter = TianshouVectorEnv(env)
    buffer = VectorReplayBuffer(capacity, len(adapter), ignore_obs_next=True)
    collector = Collector(agent.policy, adapter, buffer)
    collector.reset()
    with torch.no_grad():
        collector.collect(n_step=n_step)
    return buffer


def free_port() -> int:
    """A TCP port that no process listens on now, for torchrun's ``--master_port``: a fixed port would
    clash with another test run on the same machine (or with a parallel worker, ``pytest -n``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
