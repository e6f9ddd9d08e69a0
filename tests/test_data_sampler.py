"""The grouped batch sampler: coverage, grouping, determinism, rank split, resume from a batch."""
import numpy as np
import pytest

from training.samplers import VideoGroupedBatchSampler


def _video_keys(seed=0, videos=23, questions=301):
    rng = np.random.default_rng(seed)
    return rng.integers(0, videos, size=questions) * 7 + 3  # arbitrary, non-contiguous video ids


def _epoch(keys, epoch, **kwargs):
    sampler = VideoGroupedBatchSampler(keys, **kwargs)
    sampler.set_epoch(epoch)
    return list(sampler), sampler


@pytest.mark.parametrize("k", [0, 1, 3, 8])
@pytest.mark.parametrize("world", [1, 2, 3])
def test_every_question_once_per_epoch_and_ranks_disjoint(k, world):
    keys = _video_keys()
    per_rank = [_epoch(keys, 5, batch_size=16, questions_per_video=k, seed=9, rank=r, world_size=world)
                for r in range(world)]
    counts = {len(batches) for batches, _ in per_rank}
    assert len(counts) == 1, "every rank must run the same number of steps"
    assert all(len(batches) == len(sampler) for batches, sampler in per_rank)
    seen = np.concatenate([b for batches, _ in per_rank for b in batches])
    assert np.array_equal(np.sort(seen), np.arange(len(keys)))  # once each, across ranks: disjoint and complete
    sizes = [len(b) for batches, _ in per_rank for b in batches]
    assert max(sizes) <= 16 + max(k - 1, 0) and min(sizes) >= 1


def test_batches_are_made_of_whole_groups_of_one_video():
    keys = _video_keys()
    sampler = VideoGroupedBatchSampler(keys, 32, questions_per_video=4, seed=1)
    sampler.set_epoch(2)
    batches = list(sampler)
    order, sizes = sampler._ordered_groups()
    assert np.array_equal(np.concatenate(batches), order)
    group_ends = set(np.cumsum(sizes).tolist())
    batch_ends = np.cumsum([len(b) for b in batches])
    assert set(batch_ends.tolist()) <= group_ends  # no group is split between batches
    for group in np.split(order, np.cumsum(sizes)[:-1]):
        assert len(np.unique(keys[group])) == 1 and len(group) <= 4
    free, _ = _epoch(keys, 2, batch_size=32, questions_per_video=0, seed=1)
    grouped_videos = np.mean([len(np.unique(keys[b])) for b in batches])
    free_videos = np.mean([len(np.unique(keys[b])) for b in free])
    assert grouped_videos < 0.6 * free_videos  # the encoders run on fewer videos per batch


def test_group_sizes_exactly_k_except_each_videos_last():
    keys = np.repeat(np.arange(5), [7, 3, 9, 4, 1])
    sampler = VideoGroupedBatchSampler(keys, batch_size=6, questions_per_video=3, seed=0)
    order, sizes = sampler._ordered_groups()
    groups = np.split(order, np.cumsum(sizes)[:-1])
    per_video = {}
    for group in groups:
        assert len(np.unique(keys[group])) == 1
        per_video.setdefault(keys[group[0]], []).append(len(group))
    assert {v: sorted(s) for v, s in per_video.items()} == {0: [1, 3, 3], 1: [3], 2: [3, 3, 3], 3: [1, 3], 4: [1]}
    assert sampler.num_groups == len(groups)


def test_order_is_deterministic_per_seed_and_epoch():
    keys = _video_keys()
    a, _ = _epoch(keys, 4, batch_size=16, questions_per_video=3, seed=11)
    b, _ = _epoch(keys, 4, batch_size=16, questions_per_video=3, seed=11)
    c, _ = _epoch(keys, 5, batch_size=16, questions_per_video=3, seed=11)
    d, _ = _epoch(keys, 4, batch_size=16, questions_per_video=3, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    assert not np.array_equal(np.concatenate(a), np.concatenate(d))


def test_resume_from_a_batch_continues_the_same_order():
    keys = _video_keys()
    full, _ = _epoch(keys, 3, batch_size=16, questions_per_video=2, seed=0, rank=1, world_size=2)
    sampler = VideoGroupedBatchSampler(keys, 16, questions_per_video=2, seed=0, rank=1, world_size=2)
    sampler.set_epoch(3, start_batch=4)
    rest = list(sampler)
    assert len(sampler) == len(full) - 4 == len(rest)
    assert all(np.array_equal(x, y) for x, y in zip(full[4:], rest))


def test_evaluation_order_is_by_video_and_fixed():
    keys = _video_keys()
    batches, _ = _epoch(keys, 0, batch_size=40, shuffle=False)
    again, _ = _epoch(keys, 7, batch_size=40, shuffle=False)
    order = np.concatenate(batches)
    assert np.array_equal(order, np.concatenate(again))
    assert np.all(np.diff(keys[order]) >= 0)


def test_too_few_groups_for_the_ranks_is_an_error():
    with pytest.raises(ValueError, match="cannot be shared by 3 processes"):
        VideoGroupedBatchSampler(np.zeros(5, dtype=int), 4, questions_per_video=8, world_size=3)
