"""Infinite, seeded, resumable sampler: the whole training data stream is a pure function of (seed, k).

For the global sample number k (counted over all ranks), the dataset index is element `k mod n` of the
permutation of epoch `k div n` (`torch.randperm(n)` with a generator seeded from (seed, epoch)), and the
sample's augmentation seed is derived from (seed, k). Rank r of W takes k = r, r+W, r+2W, ... like the
reference's InfiniteSampler. Because nothing depends on what came before, resuming at iteration N only
needs `start = N * batch_size * world_size`: no replay of the data loader and no worker RNG state.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


def _mix(*values: int) -> int:
    """A 63-bit seed from several integers (SeedSequence mixes them well; equal inputs give equal output)."""
    state = np.random.SeedSequence([int(v) & 0xFFFFFFFFFFFFFFFF for v in values]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the dataset in epoch `epoch`."""
    generator = torch.Generator().manual_seed(_mix(seed, 0x5A17, epoch))
    return torch.randperm(n, generator=generator)


def sample_seed(seed: int, k: int) -> int:
    """Augmentation seed of global sample k: fits `np.random.RandomState` (below 2**32)."""
    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, 0xA06, int(k)]).generate_state(1)[0])


class InfiniteSeededSampler(Sampler):
    """Yields `(index, sample_seed)` pairs for this rank forever, starting at global sample `start`.

    `shuffle=False` walks the dataset in order (each epoch the same), still with per-sample seeds.
    """

    def __init__(
        self, length: int, seed: int, rank: int = 0, world_size: int = 1, start: int = 0, shuffle: bool = True
    ) -> None:
        if length <= 0:
            raise ValueError("the training dataset is empty")
        self.length = length
        self.seed = int(seed)
        self.rank = rank
        self.world_size = world_size
        self.start = int(start)
        self.shuffle = shuffle

    def item(self, k: int, permutation: torch.Tensor | None) -> tuple[int, int]:
        """The (index, sample_seed) of global sample k given its epoch's permutation."""
        position = k % self.length
        index = int(permutation[position]) if permutation is not None else position
        return index, sample_seed(self.seed, k)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        k = self.start + self.rank
        epoch, permutation = -1, None
        while True:
            if self.shuffle and k // self.length != epoch:
                epoch = k // self.length
                permutation = epoch_permutation(self.length, self.seed, epoch)
            yield self.item(k, permutation)
            k += self.world_size

    def __len__(self) -> int:
        """Effectively infinite; DataLoader only asks for a length when someone calls len() on it."""
        return 2**62
