"""The bundle: everything a run reads from disk (vocabulary, question splits, features, the data's signature),
loaded from the config in one call (``load_data``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from training.checkpoint import DataSignature, vocab_fingerprint
from training.data.batches import BatchDataset
from training.data.features import H5Features, InMemoryFeatures, build_video_table, read_extraction_settings
from preprocess.datasets.files import dataset_path, dataset_spec
from training.data.paths import DataError
from training.data.placement import feature_placement
from training.data.questions import (SPLIT_KEYS, SPLITS, embedding_vocabulary, load_split, log_split_coverage,
                                     missing_feature_policy)
from training.data.vocabulary import load_vocab


@dataclass
class DataBundle:
    """Everything a run reads from disk: vocabulary, splits, features and the data's signature; ``spec`` the
    registered dataset (preprocess/datasets/)."""
    vocab: dict
    signature: DataSignature
    splits: dict
    features: object
    glove: np.ndarray | None
    glove_source: Path | None
    spec: object = None
    extraction: dict | None = None  # the feature files' settings (read_extraction_settings), recorded in checkpoints

    @property
    def embedding_vocab(self) -> dict:
        """token -> index of the word embedding (question_answer_token_to_idx for multiple choice)."""
        return embedding_vocabulary(self.vocab, self.signature.answer_type)

    def dataset(self, split: str) -> BatchDataset:
        return BatchDataset(self.splits[split], self.features)

    def close(self) -> None:
        self.features.close()


def load_data(cfg, splits=SPLITS, device: torch.device = torch.device("cpu"),
              show_progress: bool = True) -> DataBundle:
    """Read the vocabulary, the question files of ``splits`` and the feature index (features: lazily or in RAM)."""
    eval_policy = missing_feature_policy(cfg)
    cap = cfg.dataset.max_question_length
    if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
        raise DataError(f"config key 'dataset.max_question_length' must be a positive integer, got "
                        f"{cfg.dataset.max_question_length!r}")
    spec = dataset_spec(cfg)
    head = data_head(cfg, spec)
    vocab = load_vocab(dataset_path(cfg, "vocab_json"), head=head)
    appearance_path = dataset_path(cfg, "appearance_feat")
    motion_path = dataset_path(cfg, "motion_feat")
    table = build_video_table(appearance_path, motion_path)
    loaded = {}
    for split in splits:
        key = SPLIT_KEYS[split]
        policy = "skip" if split == "train" else eval_policy
        loaded[split] = load_split(split, dataset_path(cfg, key), f"dataset.{key}", vocab, table,
                                   cfg.dataset.max_question_length, policy, spec=spec, head=head)
        part = loaded[split]
        log_split_coverage(part)
        if len(part) == 0:
            raise DataError(f"{part.path} (config key 'dataset.{key}'): no question has usable video features")
    dtype, placement = feature_placement(cfg, table, device)
    if placement is not None:
        features = InMemoryFeatures.load(appearance_path, motion_path, table, dtype, placement, show_progress)
    else:
        features = H5Features(appearance_path, motion_path, table)
    signature = DataSignature(
        vocab_fingerprint=vocab_fingerprint(vocab, head),
        num_question_tokens=len(embedding_vocabulary(vocab, head)),
        num_answers=_num_answers(head, vocab, loaded, spec),
        num_clips=int(table.appearance_shape[1]), frames_per_clip=int(table.appearance_shape[2]),
        appearance_dim=int(table.appearance_shape[3]), motion_dim=int(table.motion_shape[2]),
        answer_type=head, dataset=spec.file_prefix)
    train = loaded.get("train")
    return DataBundle(vocab=vocab, signature=signature, splits=loaded, features=features,
                      glove=None if train is None else train.glove,
                      glove_source=None if train is None else train.path, spec=spec,
                      extraction=read_extraction_settings(appearance_path, motion_path))


def data_head(cfg, spec) -> str:
    """The answer head the data is read for: ``model.head`` when it names a registered head (a run resolves
    ``auto`` first: training/run_settings.py), else the dataset's answer type."""
    from model.heads import head_names
    head = cfg.model.get("head") if "model" in cfg else None
    return head if head in head_names() else spec.answer_type


def _num_answers(head: str, vocab: dict, splits: dict, spec) -> int:
    """The head's outputs: A answers (open-ended), K candidates (multiple choice: the question files' K, which
    must agree across splits), 1 (count)."""
    from model.heads import get_head
    answer_head = get_head(head)
    if not answer_head.uses_candidates:
        return answer_head.num_outputs(len(vocab["answer_token_to_idx"]), 0)
    counts = {name: part.candidates.shape[1] for name, part in splits.items()}
    if len(set(counts.values())) > 1:
        raise DataError(f"the question files give different numbers of candidates per question: {counts}")
    return next(iter(counts.values()), spec.num_candidates)
