"""Checkpoints ready to answer: the model in eval mode, the vocabulary it was trained on (the file its config
names, or ``--vocab``; refused unless its fingerprint is the one the checkpoint recorded) and its data settings."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from inference import PredictError
from training.checkpoint import checkpoint_head, load_checkpoint, vocab_fingerprint
from training.data import dataset_path, embedding_vocabulary, inverse_vocab, load_vocab
from training.evaluation import model_from_checkpoint, resolve_config


@dataclass
class Predictor:
    """One checkpoint: ``model`` (eval mode on its device), ``head`` (open_ended | multiple_choice | count),
    ``vocab`` (the vocabulary JSON dict), ``cfg`` (the run's config with any overrides)."""
    name: str
    path: Path
    ckpt: dict
    model: torch.nn.Module
    head: str
    vocab: dict
    vocab_path: Path
    cfg: object

    @property
    def embedding_vocab(self) -> dict:
        """token -> id of the word embedding (question_answer_token_to_idx for multiple choice)."""
        return embedding_vocabulary(self.vocab, self.head)

    @property
    def answer_tokens(self) -> list[str]:
        return inverse_vocab(self.vocab["answer_token_to_idx"])

    @property
    def extraction(self) -> dict | None:
        """How the run's features were extracted ({"appearance": {...}, "motion": {...}}), None for checkpoints
        written before this was recorded."""
        return self.ckpt.get("extraction") or None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def load_predictor(path: str | Path, name: str, device: torch.device, vocab: str | Path | None = None,
                   overrides: list[str] = ()) -> Predictor:
    """The checkpoint at ``path`` ready to answer; PredictError when the vocabulary is not the one it was trained
    on (the two fingerprints shown)."""
    path = Path(path)
    ckpt = load_checkpoint(path, "--ckpt")
    cfg = resolve_config(None, list(overrides), ckpt)
    head = checkpoint_head(ckpt)
    vocab_path = Path(vocab) if vocab else dataset_path(cfg, "vocab_json")
    source = "--vocab" if vocab else f"dataset.vocab_json in the config of {path}; pass --vocab FILE"
    vocabulary = load_vocab(vocab_path, source, head)
    fingerprint = vocab_fingerprint(vocabulary, head)
    if fingerprint != ckpt["vocab_fingerprint"]:
        raise PredictError(f"checkpoint {path} was trained on another vocabulary than {vocab_path}: fingerprints "
                           f"{ckpt['vocab_fingerprint'][:16]}... (checkpoint) vs {fingerprint[:16]}... (file)")
    model = model_from_checkpoint(ckpt, device, path, "--ckpt")
    return Predictor(name=name, path=path, ckpt=ckpt, model=model, head=head, vocab=vocabulary,
                     vocab_path=vocab_path, cfg=cfg)
