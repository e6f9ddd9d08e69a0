"""The training objective as data: a weighted sum of named, registered loss terms (docs/model.md section 5).

Each term is registered once (:func:`register_loss`) with a name, a typed parameter dataclass (always a
``weight``; e.g. a ``temperature``) and the model-output fields it reads from the model being trained and,
optionally, from the frozen teacher. The config's ``losses`` section (and ``distill.losses``, the terms used
when a teacher is given) lists the terms by name with their parameters; nothing from the config is executed.
Built-in terms (defined here): ``ce``, ``hinge``, ``mse``, ``similarity``, ``hsic``, ``kd_appearance``,
``kd_motion``. A term is found once the module that registers it is imported: the modules in
:data:`LOSS_MODULES` are imported on the first look-up; add your module's name there, or import it yourself before
the config loads (e.g. in a test file). This module owns the config's loss sections (:data:`LOSS_SECTIONS`). A term may
be limited to some answer heads (``ce``: open-ended and multiple choice; ``hinge``: multiple choice; ``mse``:
count); :func:`check_heads` refuses the others.

Every term is computed in float32 with autocast disabled (model outputs may be bf16/fp16 under autocast, and the
Gram matrices of HSIC would lose digits in bf16) and is vectorised over the batch and the graph layers.
"""
from __future__ import annotations

import copy
import dataclasses
import importlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch.nn import functional as F

from model.heads import get_head, head_names
from utils.config import (ConfigError, Section, check_value_ranges, non_negative, positive, typed_from_dict)
from utils.text import short_repr

TOTAL = "total"  # the name of the weighted sum among the logged loss parts
BASE_TERM = "ce"  # the answer term configs/base.yml lists
LOSS_MODULES = ("model.losses",)  # modules that register loss terms, imported on the first look-up


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


def normalised_hsic(independent: torch.Tensor, joint: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """HSIC divided by its value's scale: per sample ``HSIC(X1, X2) / sqrt(HSIC(X1, X1) HSIC(X2, X2))`` (centred
    kernel alignment, in [0, 1] and unchanged when either input is scaled), averaged over the batch and the layers.

    independent, joint: (G, B, C, d) or (B, C, d), linear kernels ``K = X X^T`` over the C clips as in :func:`hsic`.
    ``HSIC(X1, X2) = trace(R K1 R K2) = sum(X1c X1c^T * X2c X2c^T)`` with ``Xc`` centred over clips.
    """
    def centred_gram(x: torch.Tensor) -> torch.Tensor:
        x = x.float() - x.float().mean(dim=-2, keepdim=True)
        return x @ x.transpose(-1, -2)                                      # (..., C, C)
    first, second = centred_gram(independent), centred_gram(joint)
    cross = (first * second).sum(dim=(-1, -2))
    scale = ((first * first).sum(dim=(-1, -2)) * (second * second).sum(dim=(-1, -2))).clamp_min(eps).sqrt()
    return (cross / scale).mean()


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


@dataclass
class TermParams:
    """Parameters every term has: its weight in the sum."""
    weight: float = 1.0


@dataclass
class HsicParams(TermParams):
    """The HSIC term: weight, and ``normalise`` (false: the paper's raw HSIC, summed over the batch, which grows
    with the batch size and the fourth power of the features' scale; true: :func:`normalised_hsic`, in [0, 1])."""
    normalise: bool = False


@dataclass
class DistillationParams(TermParams):
    """A KL distillation term: weight and softmax temperature."""
    temperature: float = 1.0


@dataclass(frozen=True)
class LossTerm:
    """A registered term: ``fn(params, student, answers, teacher) -> scalar`` reading ``student_fields`` of the
    trained model's output and ``teacher_fields`` of the teacher's (teacher None when it reads none).
    ``same_config``: model-config keys the teacher and the student must agree on for this term to make sense.
    ``heads``: the answer heads (model.head) the term fits; () = every head."""
    name: str
    fn: Callable
    params: type
    student_fields: tuple
    teacher_fields: tuple
    same_config: tuple
    heads: tuple = ()

    @property
    def reads_teacher(self) -> bool:
        return bool(self.teacher_fields)


_TERMS: dict[str, LossTerm] = {}


def register_loss(name: str, params: type = TermParams, student: tuple = (), teacher: tuple = (),
                  same_config: tuple = (), heads: tuple = ()):
    """Decorator: register a loss term under ``name`` (see :class:`LossTerm`)."""
    if name == TOTAL:
        raise ValueError(f"'{TOTAL}' is the weighted sum, not a term name")

    def decorate(fn: Callable) -> Callable:
        if name in _TERMS and _TERMS[name].fn is not fn:
            raise ValueError(f"a loss term named '{name}' is already registered")
        _TERMS[name] = LossTerm(name, fn, params, tuple(student), tuple(teacher), tuple(same_config), tuple(heads))
        return fn
    return decorate


def loss_term(name: str, where: str = "losses") -> LossTerm:
    """The registered term ``name``; ConfigError naming ``where`` and the registered names otherwise."""
    for module in LOSS_MODULES:
        importlib.import_module(module)
    if name not in _TERMS:
        raise ConfigError(f"{where}: unknown loss term '{name}' (registered: {', '.join(sorted(_TERMS))})")
    return _TERMS[name]


def merge_loss_section(defaults: dict, update: dict, origin: str, section: str) -> dict:
    """Merge ``{term name: {parameter: value} | None}`` into a loss section; names and parameters are checked
    against the registered terms, missing parameters take the term's defaults, null removes a term."""
    merged = copy.deepcopy(defaults)
    for name, params in update.items():
        dotted = f"{section}.{name}"
        if params is None:
            merged.pop(name, None)
            continue
        spec = loss_term(name, f"{origin}: key '{dotted}'")
        if not isinstance(params, dict):
            raise ConfigError(f"{origin}: key '{dotted}' is a section of term parameters, got {short_repr(params)}")
        current = merged.get(name) or dataclasses.asdict(spec.params())
        merged[name] = dataclasses.asdict(typed_from_dict(spec.params, {**current, **params}, dotted, origin))
    return merged


# Parameters of every loss term (``<section>.<term>.<name>``) -> (test, wording), as utils.config.RANGES.
LOSS_PARAMETER_RANGES = {
    "weight": (non_negative, "a finite number >= 0"),
    "temperature": (positive, "a finite number > 0"),
}


def _loss_section_check(section: str) -> Callable[[dict], None]:
    def check(cfg: dict) -> None:
        """ConfigError naming the first term parameter of the section outside its range."""
        node = cfg
        for key in section.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        check_value_ranges(cfg, {f"{section}.{term}.{name}": rule for term in (node or {})
                                 for name, rule in LOSS_PARAMETER_RANGES.items()})
    return check


LOSS_SECTIONS = {name: Section(merge_loss_section, _loss_section_check(name), null_removes=True)
                 for name in ("losses", "distill.losses")}  # the loss sections' owner

# Older keys, kept read-compatible: each stands for a loss term parameter (configs and overrides may use either).
LOSS_ALIASES = {
    "train.alpha": "losses.similarity.weight",
    "train.beta": "losses.hsic.weight",
    "distill.lambda_appearance": "distill.losses.kd_appearance.weight",
    "distill.lambda_motion": "distill.losses.kd_motion.weight",
    "distill.temperature_appearance": "distill.losses.kd_appearance.temperature",
    "distill.temperature_motion": "distill.losses.kd_motion.temperature",
}
ALIAS_RANGES = {
    "train.alpha": (non_negative, "a finite number >= 0"),
    "train.beta": (non_negative, "a finite number >= 0"),
    "distill.temperature_appearance": (positive, "a finite number > 0"),
    "distill.temperature_motion": (positive, "a finite number > 0"),
    "distill.lambda_appearance": (non_negative, "a finite number >= 0"),
    "distill.lambda_motion": (non_negative, "a finite number >= 0"),
}


@register_loss("ce", student=("logits",), heads=("open_ended", "multiple_choice"))
def cross_entropy_term(params, student, answers, teacher) -> torch.Tensor:
    """L_T: cross-entropy of the answer logits (B, A) against the answers (B,) class ids (multiple choice: the
    softmax over the K candidates' scores (B, K) against the right candidate's index)."""
    return F.cross_entropy(student.logits.float(), answers)


def multiple_choice_hinge(scores: torch.Tensor, answers: torch.Tensor) -> torch.Tensor:
    """HCRN's multiple-choice loss: ``sum over b, k of max(0, 1 + s[b, k] - s[b, answers[b]])``.

    scores (B, K) float, answers (B,) int64 the right candidate's index; a scalar, summed (not averaged) over the
    batch as HCRN's train.py does. The right candidate's own term is the constant 1 (no gradient), so the minimum is
    B, reached when every wrong candidate scores at least 1 below the right one.
    """
    scores = scores.float()
    right = scores.gather(1, answers[:, None])                                  # (B, 1)
    return torch.clamp(1.0 + scores - right, min=0.0).sum()


@register_loss("hinge", student=("logits",), heads=("multiple_choice",))
def hinge_term(params, student, answers, teacher) -> torch.Tensor:
    """Multiple choice as HCRN trains TGIF-QA Action / Transition: :func:`multiple_choice_hinge` of the candidate
    scores (B, K) against the right candidate's index (B,)."""
    return multiple_choice_hinge(student.logits, answers)


@register_loss("mse", student=("logits",), heads=("count",))
def mean_squared_error_term(params, student, answers, teacher) -> torch.Tensor:
    """Count regression (as HCRN): ``mean_B (logits[:, 0] - count)^2`` with logits (B, 1) and answers (B,) the
    integer counts."""
    return ((student.logits[:, 0].float() - answers.float()) ** 2).mean()


@register_loss("similarity", student=("joint_appearance", "joint_motion"))
def similarity_term(params, student, answers, teacher) -> torch.Tensor:
    """L_2: :func:`similarity` of the per-layer joint outputs (u*g tensors (B, C, d) each)."""
    return similarity(_stack_layers(student.joint_appearance), _stack_layers(student.joint_motion))


@register_loss("hsic", params=HsicParams,
               student=("indep_appearance", "joint_appearance", "indep_motion", "joint_motion"))
def hsic_term(params, student, answers, teacher) -> torch.Tensor:
    """L_1: :func:`hsic` (``normalise``: :func:`normalised_hsic`) of independent vs joint outputs, appearance plus
    motion."""
    measure = normalised_hsic if params.normalise else hsic
    return (measure(_stack_layers(student.indep_appearance), _stack_layers(student.joint_appearance))
            + measure(_stack_layers(student.indep_motion), _stack_layers(student.joint_motion)))


@register_loss("kd_appearance", params=DistillationParams, student=("appearance",), teacher=("fused",),
               same_config=("module_dim",))
def kd_appearance_term(params, student, answers, teacher) -> torch.Tensor:
    """L_a: :func:`distillation` of the teacher's fused V_c (B, C, d) into the student's V_a (B, C, d)."""
    return distillation(teacher.fused, student.appearance, params.temperature)


@register_loss("kd_motion", params=DistillationParams, student=("motion",), teacher=("fused",),
               same_config=("module_dim",))
def kd_motion_term(params, student, answers, teacher) -> torch.Tensor:
    """L_m: :func:`distillation` of the teacher's fused V_c (B, C, d) into the student's V_m (B, C, d)."""
    return distillation(teacher.fused, student.motion, params.temperature)


@dataclass(frozen=True)
class Objective:
    """A weighted sum of terms. ``terms``: (name, LossTerm, params); ``inactive``: names of teacher terms that
    are configured but not computed (no teacher in this run): they are reported as 0 so that a config's logged
    columns do not depend on whether a teacher is given."""
    terms: tuple
    inactive: tuple = ()

    @property
    def part_names(self) -> tuple[str, ...]:
        """The logged loss parts: ``total`` then every term, configured order."""
        return (TOTAL, *(name for name, _, _ in self.terms), *self.inactive)

    @property
    def weights(self) -> dict[str, float]:
        return {**{name: params.weight for name, _, params in self.terms}, **{name: 0.0 for name in self.inactive}}

    @property
    def teacher_terms(self) -> tuple[str, ...]:
        """Terms that read the teacher, computed or not."""
        return (*(name for name, term, _ in self.terms if term.reads_teacher), *self.inactive)

    @property
    def reads_teacher(self) -> bool:
        return any(term.reads_teacher for _, term, _ in self.terms)

    def check_outputs(self, student_fields: tuple, teacher_fields: tuple | None) -> None:
        """ConfigError when a term reads an output field the model (or the teacher, unless ``teacher_fields`` is
        None) does not produce."""
        for name, term, _ in self.terms:
            checks = [("model", term.student_fields, student_fields)]
            if teacher_fields is not None:
                checks.append(("teacher", term.teacher_fields, teacher_fields))
            for who, needed, have in checks:
                missing = [f for f in needed if f not in have]
                if missing:
                    raise ConfigError(f"loss term '{name}' reads the {who}'s output field(s) {', '.join(missing)}, "
                                      f"which that model does not produce (it has: {', '.join(have)})")


def _terms(section: dict, where: str) -> list:
    return [(name, loss_term(name, f"{where}.{name}"),
             typed_from_dict(loss_term(name).params, dict(params or {}), f"{where}.{name}"))
            for name, params in (section or {}).items()]


def build_objective(losses: dict, teacher_losses: dict | None = None, teacher_given: bool = False,
                    drop_teacher_terms: bool = False) -> Objective:
    """The objective of a run: the ``losses`` section's terms, plus ``teacher_losses`` (the config's
    ``distill.losses``) when a teacher is given (otherwise those are reported as 0).

    ConfigError when a term in ``losses`` reads a teacher but none is given (unless ``drop_teacher_terms``: a plain
    student, or evaluation without the teacher, reports them as 0), or a teacher is given but no term reads it.
    """
    terms = _terms(losses, "losses")
    extra = _terms(teacher_losses, "distill.losses")
    if not terms and not extra:
        raise ConfigError("the objective has no loss term: config section 'losses' is empty")
    if not teacher_given:
        needing = [name for name, term, _ in terms if term.reads_teacher]
        if drop_teacher_terms:
            terms = [t for t in terms if t[0] not in needing]
            extra = [t for t in extra if t[0] not in needing]
            return Objective(tuple(terms), tuple(needing) + tuple(name for name, _, _ in extra))
        if needing:
            raise ConfigError(f"loss term(s) {', '.join(needing)} (config section 'losses') read a teacher, but none "
                              "is given: set 'distill.teacher_ckpt' / --teacher_ckpt, or move them under "
                              "'distill.losses' (used only when a teacher is given)")
        return Objective(tuple(terms), tuple(name for name, _, _ in extra))
    names = [name for name, _, _ in terms]
    terms += [t for t in extra if t[0] not in names]
    if not any(term.reads_teacher for _, term, _ in terms):
        raise ConfigError("a teacher is given (distill.teacher_ckpt / --teacher_ckpt) but no loss term reads it: "
                          "list the distillation terms under 'distill.losses' (e.g. kd_appearance, kd_motion)")
    return Objective(tuple(terms))


def check_heads(cfg, head: str) -> None:
    """ConfigError naming the first configured term (``losses`` or ``distill.losses``) that does not fit the answer
    head ``head`` (e.g. ``ce`` with the count head, ``mse`` with another)."""
    for section, terms in (("losses", cfg.losses), ("distill.losses", cfg.distill.losses)):
        for name in (terms or {}):
            fits = loss_term(name, f"{section}.{name}").heads
            if not get_head(head).fits_loss(fits):
                raise ConfigError(f"config key '{section}.{name}': the {name} term fits the {' / '.join(fits)} "
                                  f"head(s), but model.head is {head}{_default_losses_hint(head, name)}")


def _default_losses_hint(head: str, term: str) -> str:
    """How the configs of a head that trains with other terms than the base config's ``ce`` list their losses:
    the chosen head's, else that of the head whose default terms include ``term``; "" when neither."""
    chosen = get_head(head)
    for candidate in [chosen] + [get_head(name) for name in head_names()]:
        if set(candidate.default_losses) != {BASE_TERM} and (candidate is chosen or term in candidate.default_losses):
            listed = [f"{BASE_TERM}: null"] * (BASE_TERM not in candidate.default_losses) + \
                [f"{t}: {{weight: 1.0}}" for t in candidate.default_losses]
            return f" ({candidate.name} configs use losses: {{{', '.join(listed)}}})"
    return ""


def objective_for(cfg, mode: str) -> Objective:
    """A run's objective from its config: ``losses``, plus ``distill.losses`` when distilling (``train.mode`` kd);
    mode student reports the teacher terms as 0 and reads no teacher."""
    return build_objective(cfg.losses, cfg.distill.losses, teacher_given=mode == "kd",
                           drop_teacher_terms=mode == "student")


def compute_losses(objective: Objective, out, answers: torch.Tensor, teacher_out=None) -> dict:
    """Every loss part of one batch as a dict of scalar float32 tensors: ``total`` and one entry per term.

    out: the model's output (a NamedTuple; terms read its fields by name); answers: (B,) long class ids;
    teacher_out: the frozen teacher's output on the same batch (detached by the terms) or None. Inactive teacher
    terms are 0. Safe to call inside an autocast region: it turns autocast off for itself.
    """
    if objective.reads_teacher and teacher_out is None:
        raise ValueError("compute_losses: the objective reads a teacher but teacher_out is None")
    device = answers.device
    with torch.autocast(device.type, enabled=False):
        parts = {name: term.fn(params, out, answers, teacher_out if term.reads_teacher else None).float()
                 for name, term, params in objective.terms}
        total = sum(objective.weights[name] * value for name, value in parts.items())
        zero = torch.zeros((), dtype=torch.float32, device=device)
        return {TOTAL: total, **parts, **{name: zero for name in objective.inactive}}
