"""Training losses (ARCHITECTURE.md section 5): cross-entropy, HSIC, similarity, distillation.

Every loss is computed in float32 with autocast disabled (model outputs may be bf16/fp16 under autocast, and the
Gram matrices of HSIC would lose digits in bf16) and is vectorised over the batch and the graph layers.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F


def _stack_layers(layers) -> torch.Tensor:
    """A sequence of (B, C, d) tensors -> (G, B, C, d) float32."""
    return torch.stack(tuple(layers)).float()


def hsic(independent: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
    """HSIC between two clip-feature sets, summed over the batch, averaged over graph layers.

    independent, joint: (G, B, C, d) or (B, C, d). Per sample ``K1 = X1 X1^T``, ``K2 = X2 X2^T`` (C x C),
    ``R = I - 1/C``, value ``trace(R K1 R K2)``; returns ``mean_G sum_B`` of it (a scalar, no normalisation).
    ``R K1 R = X1c X1c^T`` with ``X1c`` centred over clips, and ``trace(A K2) = sum(A * K2)`` for symmetric K2.
    """
    independent, joint = independent.float(), joint.float()
    centred = independent - independent.mean(dim=-2, keepdim=True)
    gram_centred = centred @ centred.transpose(-1, -2)                   # R K1 R   (..., C, C)
    gram_joint = joint @ joint.transpose(-1, -2)                          # K2       (..., C, C)
    per_sample = (gram_centred * gram_joint).sum(dim=(-1, -2))            # (G, B) or (B,)
    per_layer = per_sample.sum(dim=-1)
    return per_layer.mean() if per_layer.dim() else per_layer


def similarity(joint_appearance: torch.Tensor, joint_motion: torch.Tensor) -> torch.Tensor:
    """Similarity loss between the appearance and motion joint outputs, averaged over graph layers.

    joint_*: (G, B, C, d) or (B, C, d). Each is centred over clips and l2-normalised over features,
    ``Cov = X X^T`` (C x C per sample); the value is ``mean((Cov_a - Cov_m)^2)`` over (B, C, C), then the mean
    over layers (all layers have the same shape, so a single mean).
    """
    def covariance(x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(x.float() - x.float().mean(dim=-2, keepdim=True), dim=-1)
        return x @ x.transpose(-1, -2)
    return ((covariance(joint_appearance) - covariance(joint_motion)) ** 2).mean()


def distillation(teacher_fused: torch.Tensor, student_features: torch.Tensor, temperature: float) -> torch.Tensor:
    """``KL(softmax(V_c^t / T) || softmax(V^s / T))`` over features, summed over clips and features, / B.

    teacher_fused, student_features: (B, C, d). Equals ``KLDivLoss(reduction='batchmean')`` on the student's
    log-probabilities against the teacher's probabilities. The teacher side is detached.
    """
    teacher_log_probs = F.log_softmax(teacher_fused.detach().float() / temperature, dim=-1)
    student_log_probs = F.log_softmax(student_features.float() / temperature, dim=-1)
    kl = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum()
    return kl / student_features.shape[0]


def compute_losses(out, answers: torch.Tensor, train_cfg, distill_cfg=None, teacher_out=None) -> dict:
    """All losses of one batch as a dict of scalar float32 tensors.

    out: the model's ModelOutput; answers: (B,) long class ids. ``train_cfg.alpha`` weights the similarity
    loss, ``train_cfg.beta`` HSIC (appearance + motion terms). With ``teacher_out`` (the frozen teacher's
    ModelOutput on the same batch; detached here) also the distillation terms, weighted by ``distill_cfg``'s
    ``lambda_appearance`` / ``lambda_motion`` at temperatures ``temperature_appearance`` / ``temperature_motion``.

    Keys: total, ce, similarity, hsic, kd_appearance, kd_motion (kd terms are zero without a teacher).
    Safe to call inside an autocast region: it turns autocast off for itself.
    """
    if teacher_out is not None and distill_cfg is None:
        raise ValueError("compute_losses: teacher_out was given without distill_cfg (the config's distill "
                         "section: temperatures and lambdas)")
    with torch.autocast(out.logits.device.type, enabled=False):
        return _compute_losses(out, answers, train_cfg, distill_cfg, teacher_out)


def _compute_losses(out, answers, train_cfg, distill_cfg, teacher_out) -> dict:
    """:func:`compute_losses` without the autocast guard."""
    ce = F.cross_entropy(out.logits.float(), answers)
    sim = similarity(_stack_layers(out.joint_appearance), _stack_layers(out.joint_motion))
    hsic_value = (hsic(_stack_layers(out.indep_appearance), _stack_layers(out.joint_appearance))
                  + hsic(_stack_layers(out.indep_motion), _stack_layers(out.joint_motion)))
    total = ce + train_cfg["alpha"] * sim + train_cfg["beta"] * hsic_value
    zero = ce.new_zeros(())
    kd_appearance = kd_motion = zero
    if teacher_out is not None:
        kd_appearance = distillation(teacher_out.fused, out.appearance, distill_cfg["temperature_appearance"])
        kd_motion = distillation(teacher_out.fused, out.motion, distill_cfg["temperature_motion"])
        total = (total + distill_cfg["lambda_appearance"] * kd_appearance
                 + distill_cfg["lambda_motion"] * kd_motion)
    return {"total": total, "ce": ce, "similarity": sim, "hsic": hsic_value,
            "kd_appearance": kd_appearance, "kd_motion": kd_motion}
