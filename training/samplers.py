"""Batch samplers over a split's questions, for one process or split across DDP ranks.

Every epoch each question is used exactly once across all ranks, and every rank gets the same number of
batches (so collective ops never wait on a rank that ran out). Batch sizes are balanced (about N / T for T
batches) instead of a full batch plus a small remainder.

Orders:
- training, ``questions_per_video == 0``: a random permutation of all questions.
- training, ``questions_per_video == K > 0``: each video's questions are shuffled and cut into groups of at most
  K; the groups are shuffled and packed into batches without being split, so a batch holds few distinct videos
  and the video encoders run once per video (the collate passes unique videos plus ``video_index``).
- evaluation (``shuffle=False``): questions sorted by video, so consecutive questions share a video.
The random order depends only on (seed, epoch): deterministic, and resumable from any batch.
"""
from __future__ import annotations

import math

import numpy as np


class VideoGroupedBatchSampler:
    """Yields (b,) int64 arrays of question indices for this rank.

    Args:
        video_keys: (N,) int, the video of every question (any integer id).
        batch_size: target questions per batch (per rank).
        questions_per_video: K > 0 groups K questions of one video in a batch; 0 samples questions freely.
        shuffle: random order per epoch (training) or the fixed by-video order (evaluation).
        seed: base seed; the epoch's order comes from (seed, epoch).
        rank, world_size: this process's share of the batches.
    """

    def __init__(self, video_keys: np.ndarray, batch_size: int, questions_per_video: int = 0,
                 shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1):
        if batch_size < 1:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        if questions_per_video < 0:
            raise ValueError(f"dataset.questions_per_video must be >= 0, got {questions_per_video}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.video_keys = np.asarray(video_keys, dtype=np.int64)
        if len(self.video_keys) == 0:
            raise ValueError("cannot sample batches from an empty split")
        self.batch_size = batch_size
        self.questions_per_video = questions_per_video
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0
        if shuffle and questions_per_video > 0:
            _, per_video = np.unique(self.video_keys, return_counts=True)
            self.num_groups = int(np.sum(-(-per_video // questions_per_video)))
        else:
            self.num_groups = len(self.video_keys)
        self.batches_per_rank = self._num_batches_total(self.num_groups) // world_size

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's order; ``start_batch`` skips this rank's first batches (mid-epoch resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def _ordered_groups(self) -> tuple[np.ndarray, np.ndarray]:
        """The epoch's question order (N,) and the sizes of its consecutive unsplittable groups (G,)."""
        n = len(self.video_keys)
        if not self.shuffle:
            return np.argsort(self.video_keys, kind="stable"), np.ones(n, dtype=np.int64)
        rng = np.random.default_rng([self.seed, self.epoch])
        if self.questions_per_video == 0:
            return rng.permutation(n), np.ones(n, dtype=np.int64)
        # questions sorted by video, randomly within each video
        order = np.lexsort((rng.random(n), self.video_keys))
        keys = self.video_keys[order]
        new_video = np.empty(n, dtype=bool)
        new_video[0] = True
        new_video[1:] = keys[1:] != keys[:-1]
        video_start = np.maximum.accumulate(np.where(new_video, np.arange(n), 0))
        position_in_video = np.arange(n) - video_start
        new_group = new_video | (position_in_video % self.questions_per_video == 0)
        group_of = np.cumsum(new_group) - 1  # (N,) group label of each ordered question
        num_groups = int(group_of[-1]) + 1
        group_rank = rng.permutation(num_groups)
        regroup = np.argsort(group_rank[group_of], kind="stable")  # groups in shuffled order, members kept
        sizes = np.bincount(group_of, minlength=num_groups)[np.argsort(group_rank)]
        return order[regroup], sizes

    def _num_batches_total(self, num_groups: int) -> int:
        n = len(self.video_keys)
        per_rank = math.ceil(n / (self.world_size * self.batch_size))
        total = self.world_size * per_rank
        if num_groups < total:  # tiny splits or huge groups: fewer, larger batches
            total = self.world_size * (num_groups // self.world_size)
        if total == 0:
            raise ValueError(f"{num_groups} question groups cannot be shared by {self.world_size} processes")
        return total

    def all_batches(self) -> list[np.ndarray]:
        """The epoch's batches of every rank, in order (rank r takes batches r, r + W, r + 2W, ...)."""
        order, sizes = self._ordered_groups()
        num_groups = len(sizes)
        total = self._num_batches_total(num_groups)
        ends = np.cumsum(sizes)  # question count after each group
        targets = np.arange(1, total) * (len(order) / total)
        cuts = np.searchsorted(ends, targets, side="left") + 1  # groups in the first i batches
        # every batch keeps at least one group: cuts strictly increasing within [i, G - T + i]
        steps = np.arange(1, total)
        cuts = np.clip(cuts, steps, num_groups - total + steps)
        cuts = np.maximum.accumulate(cuts - steps) + steps
        boundaries = ends[cuts - 1]
        return np.split(order, boundaries)

    def batches(self) -> list[np.ndarray]:
        """This rank's batches for the current epoch, from ``start_batch`` on."""
        return self.all_batches()[self.rank::self.world_size][self.start_batch:]

    def __iter__(self):
        return iter(self.batches())

    def __len__(self) -> int:
        return max(self.batches_per_rank - self.start_batch, 0)
