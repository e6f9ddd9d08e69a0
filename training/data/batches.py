"""Batching: a whole batch built in one call from an array of question indices, and the loaders that iterate them.

A batch is built in one call from an array of question indices (the samplers yield those), with vectorised
numpy gathers and one sorted HDF5 read per feature file, never a per-sample loop or file open:

    appearance      (N, C, F, D) float32   the batch's unique videos
    motion          (N, C, D)    float32
    question        (B, L)       int64     trimmed to the longest question of the batch
    question_len    (B,)         int64
    answer          (B,)         int64
    video_index     (B,)         int64     row of ``appearance``/``motion`` for each question
    question_index  (B,)         int64     position of each question in its split
    candidates      (B, K, L_a)  int64     multiple choice only: trimmed to the longest candidate of the batch
    candidates_len  (B, K)       int64     multiple choice only
"""
from __future__ import annotations

import numpy as np
import torch

from training.data.features import H5Features, InMemoryFeatures, to_device_async
from training.data.questions import QuestionSplit


def batch_to_device(batch: dict, device: torch.device) -> dict:
    """Every tensor of ``batch`` copied to ``device`` without a host sync (features.to_device_async)."""
    return {k: to_device_async(v, device) for k, v in batch.items()}


class BatchDataset:
    """Index with an array of question indices of ``split``; returns the batch dict (module docstring)."""

    def __init__(self, split: QuestionSplit, features: H5Features | InMemoryFeatures):
        self.split = split
        self.features = features

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, indices) -> dict:
        indices = np.asarray(indices, dtype=np.int64)
        keys, video_index = np.unique(self.split.video_key[indices], return_inverse=True)
        appearance, motion = self.features.read(keys)
        lengths = self.split.lengths[indices]
        batch = {
            "appearance": appearance,
            "motion": motion,
            "question": torch.from_numpy(np.ascontiguousarray(self.split.questions[indices, :int(lengths.max())])),
            "question_len": torch.from_numpy(lengths),
            "answer": torch.from_numpy(self.split.answers[indices]),
            "video_index": torch.from_numpy(video_index.reshape(-1).astype(np.int64)),
            "question_index": torch.from_numpy(indices),
        }
        if self.split.candidates is not None:
            candidate_lengths = self.split.candidate_lengths[indices]
            width = max(int(candidate_lengths.max()), 1)
            batch["candidates"] = torch.from_numpy(np.ascontiguousarray(self.split.candidates[indices, :, :width]))
            batch["candidates_len"] = torch.from_numpy(np.ascontiguousarray(candidate_lengths))
        return batch


def _worker_init(_worker_id: int) -> None:
    """DataLoader workers ignore Ctrl-C: the main process finishes its step, saves, then stops them."""
    import signal
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class _InProcessLoader:
    """Batches built in the main process (in-memory features: a gather, no workers needed)."""

    def __init__(self, dataset: BatchDataset, sampler):
        self.dataset = dataset
        self.sampler = sampler

    def __iter__(self):
        for indices in self.sampler:
            yield self.dataset[indices]

    def __len__(self) -> int:
        return len(self.sampler)


def build_loader(dataset: BatchDataset, sampler, num_workers: int, device: torch.device, seed: int = 0):
    """An iterable of batch dicts over ``sampler``'s batches (length = batches this epoch)."""
    if isinstance(dataset.features, InMemoryFeatures) or num_workers == 0:
        return _InProcessLoader(dataset, sampler)
    return torch.utils.data.DataLoader(
        dataset, batch_size=None, sampler=sampler, num_workers=num_workers,
        pin_memory=device.type == "cuda", persistent_workers=True, worker_init_fn=_worker_init,
        generator=torch.Generator().manual_seed(seed))
