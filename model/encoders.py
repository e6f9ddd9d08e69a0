"""Question and video encoders (docs/model.md section 2).

The question BiLSTMs take variable-length, 0-padded questions without ``pack_padded_sequence``: packing needs
the lengths on the CPU, a host-device sync when they live on the GPU. :class:`LengthMaskedBiLSTM` gives the
same result exactly: the forward direction runs over the padded batch (an LSTM is causal, so positions before a
sequence's end never see its padding) and the backward direction runs over each sequence reversed within its own
length by an index gather, so it too reads the valid tokens first. The video encoders use fixed lengths and run
on the fused ``nn.LSTM`` path (cuDNN on GPU).
"""
from __future__ import annotations

import torch
from torch import nn

from model.cpu_ops import Dropout, Linear, fast_path_applies
from model.hoisted_lstm import bilstm_final_states


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, max_len)`` bool mask, True at positions ``t < length``."""
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]


def reverse_within_length(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence of ``x (B, L, E)`` within its own length; positions ``t >= length`` stay put.

    ``lengths (B,)`` must lie in ``[1, L]``. The operation is its own inverse.
    """
    positions = torch.arange(x.shape[1], device=x.device)
    flipped = lengths[:, None] - 1 - positions                        # (B, L)
    index = torch.where(positions < lengths[:, None], flipped, positions)
    return x.gather(1, index[:, :, None].expand_as(x))


class LengthMaskedBiLSTM(nn.Module):
    """Single-layer BiLSTM over 0-padded sequences, equal to running it over the packed sequences.

    Two unidirectional ``nn.LSTM`` (same parameter count as one bidirectional one).

    forward(x (B, L, E), lengths (B,) in [1, L]) -> (outputs (B, L, 2H) zero beyond each length,
    final (B, 2H) = [last forward state ; last backward state]).
    """

    def __init__(self, input_dim: int, hidden_dim: int):
        super().__init__()
        self.forward_lstm = nn.LSTM(input_dim, hidden_dim, batch_first=True)
        self.backward_lstm = nn.LSTM(input_dim, hidden_dim, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        last = (lengths - 1)[:, None, None]                               # (B, 1, 1)
        fwd, _ = self.forward_lstm(x)                                     # (B, L, H)
        bwd_reversed, _ = self.backward_lstm(reverse_within_length(x, lengths))
        bwd = reverse_within_length(bwd_reversed, lengths)                # (B, L, H)
        final_fwd = fwd.gather(1, last.expand(-1, 1, fwd.shape[2]))[:, 0]
        final_bwd = bwd_reversed.gather(1, last.expand(-1, 1, bwd.shape[2]))[:, 0]
        mask = length_mask(lengths, x.shape[1])[:, :, None]
        outputs = torch.cat([fwd, bwd], dim=2) * mask
        return outputs, torch.cat([final_fwd, final_bwd], dim=1)


class QuestionEncoder(nn.Module):
    """Word embedding, contextual-word BiLSTM and a separate sentence BiLSTM (both ``w -> d/2`` per direction).

    forward(question (B, L) long, lengths (B,) long in [1, L]) -> (Q_w (B, L, w), Q_e (B, L, d) zero beyond
    each length, q (B, d)).
    """

    def __init__(self, num_tokens: int, word_dim: int, module_dim: int, word_dropout: float,
                 question_dropout: float):
        super().__init__()
        self.embedding = nn.Embedding(num_tokens, word_dim)
        self.word_dropout = Dropout(word_dropout)
        self.contextual = LengthMaskedBiLSTM(word_dim, module_dim // 2)
        self.sentence = LengthMaskedBiLSTM(word_dim, module_dim // 2)
        self.question_dropout = Dropout(question_dropout)

    def forward(self, question: torch.Tensor, lengths: torch.Tensor):
        words = torch.tanh(self.word_dropout(self.embedding(question)))   # Q_w (B, L, w)
        contextual, _ = self.contextual(words, lengths)                    # Q_e (B, L, d)
        _, sentence = self.sentence(words, lengths)                        # (B, d)
        return words, contextual, self.question_dropout(sentence)

    def encode_sentence(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The sentence vector alone, with the same weights: tokens (M, L) long, lengths (M,) in [1, L] -> (M, d).
        Multiple-choice candidates (flattened to M = B * K rows) are encoded with it."""
        words = torch.tanh(self.word_dropout(self.embedding(tokens)))
        _, sentence = self.sentence(words, lengths)
        return self.question_dropout(sentence)


class AppearanceEncoder(nn.Module):
    """``tanh(dropout(x))``, a BiLSTM ``D -> d/2`` per direction over the F frames of each clip, final states.

    forward(appearance (N, C, F, D)) -> V_a (N, C, d). Depends on the video only. On the CPU fast path
    (model/cpu_ops.py) the BiLSTM runs with its input projection hoisted out of the recurrence, in bf16 under CPU
    autocast (model/hoisted_lstm.py); elsewhere it is ``nn.LSTM`` itself.
    """

    def __init__(self, vision_dim: int, module_dim: int, input_dropout: float, clip_dropout: float):
        super().__init__()
        self.input_dropout = Dropout(input_dropout)
        self.lstm = nn.LSTM(vision_dim, module_dim // 2, batch_first=True, bidirectional=True)
        self.clip_dropout = Dropout(clip_dropout)

    def forward(self, appearance: torch.Tensor) -> torch.Tensor:
        n, c, f, dim = appearance.shape
        frames = torch.tanh(self.input_dropout(appearance)).reshape(n * c, f, dim)
        if fast_path_applies(frames, self.lstm.weight_ih_l0):
            hidden = bilstm_final_states(self.lstm, frames)                # (2, N*C, d/2), same parameters
        else:
            _, (hidden, _) = self.lstm(frames)                             # hidden (2, N*C, d/2)
        clips = torch.cat([hidden[0], hidden[1]], dim=1).reshape(n, c, -1)
        return self.clip_dropout(clips)


class MotionEncoder(nn.Module):
    """``V_m = Linear(D, d)(motion)``: (N, C, D) -> (N, C, d)."""

    def __init__(self, vision_dim: int, module_dim: int):
        super().__init__()
        self.proj = Linear(vision_dim, module_dim)

    def forward(self, motion: torch.Tensor) -> torch.Tensor:
        return self.proj(motion)

