"""The infinite seeded sampler: the data stream is a pure function of (seed, global sample number)."""

from __future__ import annotations

import itertools

import torch
from torch.utils.data import DataLoader

from dimatting.engine.sampler import InfiniteSeededSampler, epoch_permutation, sample_seed


def take(sampler: InfiniteSeededSampler, n: int) -> list[tuple[int, int]]:
    return list(itertools.islice(iter(sampler), n))


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    assert take(InfiniteSeededSampler(7, seed=3), 30) == take(InfiniteSeededSampler(7, seed=3), 30)
    assert take(InfiniteSeededSampler(7, seed=3), 30) != take(InfiniteSeededSampler(7, seed=4), 30)


def test_every_epoch_is_a_permutation_and_epochs_differ() -> None:
    items = [index for index, _ in take(InfiniteSeededSampler(10, seed=0), 30)]
    epochs = [items[i : i + 10] for i in range(0, 30, 10)]
    assert all(sorted(e) == list(range(10)) for e in epochs)
    assert epochs[0] != epochs[1]
    assert epochs[1] == epoch_permutation(10, 0, 1).tolist()


def test_starting_later_continues_the_same_stream() -> None:
    full = take(InfiniteSeededSampler(5, seed=11), 40)
    assert take(InfiniteSeededSampler(5, seed=11, start=17), 23) == full[17:]


def test_ranks_interleave_the_global_stream() -> None:
    world = 3
    full = take(InfiniteSeededSampler(8, seed=1), 30)
    for rank in range(world):
        ranked = take(InfiniteSeededSampler(8, seed=1, rank=rank, world_size=world), 10)
        assert ranked == full[rank::world]
    resumed = take(InfiniteSeededSampler(8, seed=1, rank=1, world_size=world, start=12), 4)
    assert resumed == full[13::world][:4]


def test_sample_seeds_fit_randomstate_and_differ() -> None:
    seeds = [sample_seed(5, k) for k in range(1000)]
    assert all(0 <= s < 2**32 for s in seeds)
    assert len(set(seeds)) == 1000
    assert sample_seed(5, 7) == sample_seed(5, 7) != sample_seed(6, 7)


def test_without_shuffle_indices_walk_the_dataset() -> None:
    items = take(InfiniteSeededSampler(4, seed=0, shuffle=False), 9)
    assert [i for i, _ in items] == [0, 1, 2, 3, 0, 1, 2, 3, 0]


class Echo:
    """A dataset returning what it is asked for, so the batches show the sampler's stream."""

    def __len__(self) -> int:
        return 6

    def __getitem__(self, item: tuple[int, int]) -> torch.Tensor:
        return torch.tensor(item, dtype=torch.int64)


def test_dataloader_batches_do_not_depend_on_worker_count() -> None:
    def batches(workers: int) -> list[list[list[int]]]:
        loader = DataLoader(Echo(), batch_size=4, sampler=InfiniteSeededSampler(6, seed=2), num_workers=workers)
        return [b.tolist() for b in itertools.islice(loader, 5)]

    assert batches(0) == batches(2)
