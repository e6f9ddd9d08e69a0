"""The networks a run builds: the student it trains (GloVe-initialised when asked) and the frozen teacher it
distils from, each checked against the data and the config."""
from __future__ import annotations

from pathlib import Path

import torch

from model import build_model
from model.losses import loss_term
from model.registry import model_spec
from preprocess.question_file import first_nonfinite_row
from training.checkpoint import (CheckpointError, build_checkpoint_model, check_against_data,
                                 check_model_fits_memory, load_checkpoint)
from training.data import DataError, inverse_vocab
from utils.config import ConfigError


def load_teacher(path: Path, source: str, cfg, signature, device: torch.device, objective) -> torch.nn.Module:
    """The frozen teacher (eval mode, no gradients) from its checkpoint, built from the checkpoint's own model name
    and config; the model-config keys the objective's teacher terms need equal (``same_config``) are checked."""
    if not path.is_file():
        raise CheckpointError(f"teacher checkpoint not found: {path} (from {source}); train the teacher first, e.g. "
                              "python train.py --cfg configs/msvd_qa_teacher.yml")
    ckpt = load_checkpoint(path, source)
    shared = {key for name in objective.teacher_terms for key in loss_term(name).same_config}
    check_against_data(ckpt, signature, path, source, model_dims={key: cfg.model.get(key) for key in sorted(shared)})
    objective.check_outputs(model_spec(cfg.model.name).output_fields,
                            model_spec(ckpt["model_config"].get("name")).output_fields)
    teacher = build_checkpoint_model(ckpt, path, source)
    teacher.requires_grad_(False)
    return teacher.to(device).eval()


def build_student(cfg, bundle) -> torch.nn.Module:
    """The model being trained, GloVe-initialised when ``model.glove`` is true."""
    sig = bundle.signature
    for key, width, file_key in (("appearance_dim", sig.appearance_dim, "appearance_feat"),
                                 ("motion_dim", sig.motion_dim, "motion_feat")):
        wanted = cfg.model.get(key) or cfg.model.vision_dim  # null: vision_dim (a model without the key: likewise)
        if wanted != width:
            source = key if cfg.model.get(key) else f"vision_dim (model.{key} is null)"
            raise DataError(f"model.{source} is {wanted} but the features of dataset.{file_key} are {width}-d: set "
                            f"model.{key}={width} or null (the file's width)")
    check_model_fits_memory(cfg.model, sig.num_question_tokens, sig.num_answers,
                            f"config section 'model' with {sig.num_question_tokens} question tokens", ConfigError)
    model = build_model(cfg.model, sig.num_question_tokens, sig.num_answers)
    if cfg.model.glove and not hasattr(model, "load_glove"):
        raise ConfigError(f"model.glove is true but model '{cfg.model.name}' has no word embedding to load GloVe "
                          "into: set model.glove=false")
    if cfg.model.glove:
        source = f"{bundle.glove_source} (config key 'dataset.train_question_pt')"
        if bundle.glove is None:
            raise DataError(f"{source} holds no 'glove' matrix but model.glove is true; set model.glove=false to "
                            "start from random word embeddings")
        rows, dim = bundle.glove.shape
        if dim != cfg.model.word_dim:
            raise DataError(f"{source}: the GloVe matrix is {dim}-d but model.word_dim is {cfg.model.word_dim} "
                            f"(set model.word_dim={dim})")
        if rows != sig.num_question_tokens:
            raise DataError(f"{source}: the GloVe matrix has {rows} rows but the vocabulary (dataset.vocab_json) "
                            f"has {sig.num_question_tokens} tokens in its embedding vocabulary")
        bad = first_nonfinite_row(bundle.glove)
        if bad is not None:
            raise DataError(f"{source}: row {bad} of the GloVe matrix (question token "
                            f"{inverse_vocab(bundle.embedding_vocab)[bad]!r}) holds NaN or inf")
        model.load_glove(bundle.glove)
    return model
