"""The whole VideoQA network: teacher (g graph layers) and student (g = 1) differ only by config.

docs/model.md sections 2-4. Registered as model ``dualvgr`` (model/registry.py): its typed config is
:class:`DualVGRConfig`; ``build_model(cfg.model, num_question_tokens=V, num_answers=A)`` builds it.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from model.dualvgr import DualVGR
from model.encoders import AppearanceEncoder, MotionEncoder, QuestionEncoder, length_mask
from model.fusion import MFB
from model.gat import GraphAttention
from model.heads import get_head, head_names
from model.registry import register_model
from utils.config import ConfigError

AUTO_HEAD = "auto"  # a config's model.head before it is resolved against the dataset


@dataclass
class DualVGRDropout:
    """Dropout probabilities (configs/base.yml ``model.dropout`` documents each)."""
    word: float
    question: float
    appearance_input: float
    clip: float
    gat: float
    readout: float
    classifier: float


@dataclass
class DualVGRConfig:
    """Constructor arguments of :class:`VideoQAModel` besides the vocabulary sizes (configs/base.yml ``model``)."""
    module_dim: int
    word_dim: int
    vision_dim: int
    num_heads: int
    graph_layers: int
    unit_layers: int
    mfb_factor: int
    mfb_dim: int
    dropout: DualVGRDropout
    head: str = "open_ended"   # a registered answer head (model/heads/; docs/model.md section 8); checkpoints
                               # without it are open_ended
    appearance_dim: int | None = None  # D_a, the appearance features' width (a training run writes the feature
                                       # file's here); None: vision_dim (checkpoints written before this key)
    motion_dim: int | None = None      # D_m, the motion features' width; None: vision_dim


class ModelOutput(NamedTuple):
    """Outputs of :meth:`VideoQAModel.forward` (B questions, C clips, d = module_dim).

    The per-layer tuples hold u * g tensors of shape (B, C, d); graph layer j of unit i is entry ``i * g + j``.
    """
    logits: torch.Tensor                 # (B, A) open-ended, (B, K) multiple choice, (B, 1) count
    appearance: torch.Tensor             # (B, C, d) V_a after the units (MFB input)
    motion: torch.Tensor                 # (B, C, d) V_m after the units (MFB input)
    fused: torch.Tensor                  # (B, C, d) V_c, the MFB output
    indep_appearance: tuple
    joint_appearance: tuple
    indep_motion: tuple
    joint_motion: tuple


class VideoQAModel(nn.Module):
    """DualVGR-style VideoQA model (teacher or student).

    Build it with :func:`model.registry.build_model`. ``forward(appearance, motion, question, question_len,
    video_index=None, candidates=None, candidates_len=None)``:

    - appearance ``(N, C, F, D_a)`` float (any float dtype; cast to the parameters' dtype),
    - motion ``(N, C, D_m)`` float (D_a = ``appearance_dim``, D_m = ``motion_dim``; each defaults to ``vision_dim``),
    - question ``(B, L)`` long token ids, 0-padded; question_len ``(B,)`` long on any device (moved to the
      question's device without a sync), values clamped to ``[1, L]``,
    - video_index ``(B,)`` long or None: question b is about video row ``video_index[b]``. The video encoders
      (which never see the question) run once per row, then their outputs are gathered per question.
      None means N == B and row b belongs to question b,
    - candidates ``(B, K, L_a)`` long and candidates_len ``(B, K)`` long: the answer candidates (multiple-choice
      head only; required there, refused otherwise), values of candidates_len clamped to ``[1, L_a]``.

    ``head``: a registered answer head (model/heads/, docs/model.md section 8) that builds and applies the output
    layer (``readout`` and ``classifier``): ``open_ended`` scores the A answers (logits (B, A)); ``count`` has one
    regression output (``num_answers`` = 1, logits (B, 1)); ``multiple_choice`` scores each of the K candidates
    (``num_answers`` = K, logits (B, K)) with a candidate-conditioned readout and a candidate scorer.

    Returns a :class:`ModelOutput`.
    """

    def __init__(self, num_question_tokens: int, num_answers: int, module_dim: int, word_dim: int,
                 vision_dim: int, num_heads: int, graph_layers: int, unit_layers: int, mfb_factor: int,
                 mfb_dim: int, dropout: dict, head: str = "open_ended", appearance_dim: int | None = None,
                 motion_dim: int | None = None):
        super().__init__()
        answer_head = get_head(head)
        self.appearance_dim = appearance_dim or vision_dim
        self.motion_dim = motion_dim or vision_dim
        self.head = head
        self.num_answers = num_answers
        self.question_encoder = QuestionEncoder(num_question_tokens, word_dim, module_dim, dropout["word"],
                                                dropout["question"])
        self.appearance_encoder = AppearanceEncoder(self.appearance_dim, module_dim, dropout["appearance_input"],
                                                    dropout["clip"])
        self.motion_encoder = MotionEncoder(self.motion_dim, module_dim)
        self.units = DualVGR(module_dim, word_dim, num_heads, graph_layers, unit_layers, dropout["gat"])
        self.mfb = MFB(module_dim, mfb_dim, mfb_factor)
        self.readout, self.classifier = answer_head.build_output(module_dim, num_answers, dropout)
        self.answer_head = answer_head  # the Head (model/heads/): a plain attribute, not a submodule
        init_weights(self)

    @torch.no_grad()
    def load_glove(self, matrix) -> None:
        """Copy a ``(V, word_dim)`` array or tensor into the word embedding."""
        weight = self.question_encoder.embedding.weight
        matrix = torch.as_tensor(np.asarray(matrix) if not torch.is_tensor(matrix) else matrix)
        if tuple(matrix.shape) != tuple(weight.shape):
            raise ValueError(f"GloVe matrix has shape {tuple(matrix.shape)}, the word embedding needs "
                             f"{tuple(weight.shape)} (question vocabulary size, model.word_dim)")
        if not matrix.is_floating_point() or not torch.isfinite(matrix).all():
            raise ValueError("GloVe matrix must hold finite floating-point values")
        weight.copy_(matrix.to(device=weight.device, dtype=weight.dtype))

    def forward(self, appearance: torch.Tensor, motion: torch.Tensor, question: torch.Tensor,
                question_len: torch.Tensor, video_index: torch.Tensor | None = None,
                candidates: torch.Tensor | None = None, candidates_len: torch.Tensor | None = None) -> ModelOutput:
        self._check_shapes(appearance, motion, question, question_len, video_index)
        self._check_candidates(question, candidates, candidates_len)
        device = question.device
        lengths = question_len.to(device, non_blocking=True).long().clamp(1, question.shape[1])
        dtype = self.motion_encoder.proj.weight.dtype
        appearance = self.appearance_encoder(appearance.to(dtype))              # (N, C, d)
        motion = self.motion_encoder(motion.to(dtype))                          # (N, C, d)
        if video_index is not None:
            index = video_index.to(device, non_blocking=True).long()
            appearance, motion = appearance.index_select(0, index), motion.index_select(0, index)
        words, contextual, sentence = self.question_encoder(question, lengths)
        units = self.units(appearance, motion, contextual, words, length_mask(lengths, question.shape[1]))
        fused = self.mfb(units.appearance, units.motion)                        # (B, C, d)
        logits = self.answer_head.logits(self, fused, sentence, candidates, candidates_len)
        return ModelOutput(logits, units.appearance, units.motion, fused, units.indep_appearance,
                           units.joint_appearance, units.indep_motion, units.joint_motion)

    def _check_candidates(self, question, candidates, candidates_len) -> None:
        """The candidates a head that uses them needs (and no others get); shape checks only."""
        if not self.answer_head.uses_candidates:
            if candidates is not None:
                raise ValueError(f"candidates are given but the model's head is {self.head}, not multiple_choice "
                                 "or another head that uses candidates")
            return
        if candidates is None or candidates_len is None:
            raise ValueError(f"the {self.head} head needs candidates (B, K, L_a) and candidates_len (B, K)")
        expected = (question.shape[0], self.num_answers)
        if candidates.dim() != 3 or tuple(candidates.shape[:2]) != expected or candidates.shape[2] < 1:
            raise ValueError(f"candidates must be (B, K, L_a) with (B, K) = {expected}, got {tuple(candidates.shape)}")
        if tuple(candidates_len.shape) != expected:
            raise ValueError(f"candidates_len must be (B, K) = {expected}, got {tuple(candidates_len.shape)}")

    def _check_shapes(self, appearance, motion, question, question_len, video_index) -> None:
        """Shape checks only (host-side metadata, no device sync)."""
        if appearance.dim() != 4 or appearance.shape[-1] != self.appearance_dim:
            raise ValueError(f"appearance must be (N, C, F, {self.appearance_dim}), got {tuple(appearance.shape)}")
        if tuple(motion.shape) != (appearance.shape[0], appearance.shape[1], self.motion_dim):
            raise ValueError(f"motion must be (N, C, D_m) = {(appearance.shape[0], appearance.shape[1], self.motion_dim)}"
                             f" to match appearance, got {tuple(motion.shape)}")
        if question.dim() != 2 or question_len.shape != (question.shape[0],):
            raise ValueError(f"question must be (B, L) and question_len (B,), got {tuple(question.shape)} and "
                             f"{tuple(question_len.shape)}")
        if video_index is None:
            if appearance.shape[0] != question.shape[0]:
                raise ValueError(f"without video_index there must be one video row per question: "
                                 f"{appearance.shape[0]} rows, {question.shape[0]} questions")
        elif video_index.shape != (question.shape[0],):
            raise ValueError(f"video_index must be (B,) = ({question.shape[0]},), got {tuple(video_index.shape)}")


def init_weights(model: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every Linear/Conv/LSTM, uniform(-1, 1) embeddings;
    GAT blocks initialise each head as its own Linear layers would be."""
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LSTM):
            for name, param in module.named_parameters():
                if name.startswith("weight"):
                    nn.init.xavier_uniform_(param)
                elif name.startswith("bias"):
                    nn.init.zeros_(param)
        elif isinstance(module, nn.Embedding):
            nn.init.uniform_(module.weight, -1.0, 1.0)
        elif isinstance(module, GraphAttention):
            module.reset_parameters()


@register_model("dualvgr", config=DualVGRConfig, outputs=ModelOutput)
def build_dualvgr(config: DualVGRConfig, num_question_tokens: int, num_answers: int) -> VideoQAModel:
    """The DualVGR-style network for V question tokens and A answers (K candidates for the multiple-choice head,
    1 for count); ConfigError names a bad ``model`` key."""
    values = asdict(config)
    head = values["head"]
    if head not in head_names():
        hint = " (auto is resolved from the dataset's answer type before the model is built)" if head == AUTO_HEAD else ""
        raise ConfigError(f"model.head must be one of {', '.join(head_names())}, got {head!r}{hint}")
    for key, value in values.items():
        if key not in ("dropout", "head") and value is not None and value < 1:
            raise ConfigError(f"model.{key} must be a positive integer, got {value!r}")
    if config.module_dim % 2 or config.module_dim % config.num_heads:
        raise ConfigError(f"model.module_dim ({config.module_dim}) must be even and divisible by model.num_heads "
                          f"({config.num_heads})")
    get_head(head).check_outputs(num_question_tokens, num_answers)
    return VideoQAModel(num_question_tokens, num_answers, **values)
