"""Answer heads (open-ended, multiple choice, count): shapes, parameter counts by formula, the multiple-choice logits
against a per-candidate computation, the mse term, and the head / loss / dataset checks of the config."""
import numpy as np
import pytest
import torch

from model import build_model
from model.losses import build_objective, check_heads, compute_losses, loss_term
from train_fixtures import TINY_MODEL
from utils.config import ConfigError
from training.run_schema import load_config

pytestmark = pytest.mark.usefixtures("single_thread")
DROPOUT = {k: 0.0 for k in ("word", "question", "appearance_input", "clip", "gat", "readout", "classifier")}
B, K, C, F, L, LA, V = 3, 4, 4, 2, 5, 3, 20


def tiny_model(head: str, num_answers: int):
    torch.manual_seed(0)
    section = {"name": "dualvgr", **TINY_MODEL, "dropout": dict(DROPOUT), "head": head}
    return build_model(section, V, num_answers)


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    appearance = torch.randn(B, C, F, TINY_MODEL["vision_dim"], generator=g)
    motion = torch.randn(B, C, TINY_MODEL["vision_dim"], generator=g)
    question = torch.randint(1, V, (B, L), generator=g)
    question_len = torch.tensor([5, 3, 1])
    candidates = torch.randint(1, V, (B, K, LA), generator=g)
    candidates_len = torch.randint(1, LA + 1, (B, K), generator=g)
    return appearance, motion, question, question_len, candidates, candidates_len


def n(module) -> int:
    return sum(p.numel() for p in module.parameters())


def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def head_parameters(head: str, d: int, answers: int) -> int:
    """The readout + classifier parameters of each head, by formula (docs/model.md section 8)."""
    if head == "multiple_choice":
        readout = 2 * linear(d, d, bias=False) + linear(2 * d, d) + linear(d, 1)
        scorer = 2 * linear(d, d) + linear(4 * d, d) + 2 * d + linear(d, 1)
        return readout + scorer
    readout = linear(d, d, bias=False) + linear(d, 1)
    classifier = linear(d, d) + linear(2 * d, d) + 2 * d + linear(d, answers)
    return readout + classifier


@pytest.mark.parametrize("head,answers,width", [("open_ended", 7, 7), ("multiple_choice", K, K), ("count", 1, 1)])
def test_head_shapes_and_parameter_counts(head, answers, width):
    model = tiny_model(head, answers).eval()
    appearance, motion, question, question_len, candidates, candidates_len = inputs()
    extra = {"candidates": candidates, "candidates_len": candidates_len} if head == "multiple_choice" else {}
    out = model(appearance, motion, question, question_len, **extra)
    assert out.logits.shape == (B, width) and torch.isfinite(out.logits).all()
    assert out.fused.shape == (B, C, TINY_MODEL["module_dim"])
    d = TINY_MODEL["module_dim"]
    assert n(model.readout) + n(model.classifier) == head_parameters(head, d, answers)
    # everything else (encoders, units, MFB) is the open-ended model's, unchanged
    trunk = n(model) - n(model.readout) - n(model.classifier)
    reference = tiny_model("open_ended", 7)
    assert trunk == n(reference) - n(reference.readout) - n(reference.classifier)


def test_multiple_choice_logits_equal_a_per_candidate_computation():
    model = tiny_model("multiple_choice", K).eval()
    for module in model.modules():  # non-trivial BatchNorm running statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    appearance, motion, question, question_len, candidates, candidates_len = inputs(1)
    with torch.no_grad():
        out = model(appearance, motion, question, question_len, candidates=candidates, candidates_len=candidates_len)
        _, _, sentence = model.question_encoder(question, question_len)
        question_video = model.readout(sentence, out.fused)
        each = []
        for b in range(B):
            for k in range(K):
                length = int(candidates_len[b, k])
                tokens = candidates[b:b + 1, k, :length]          # the candidate alone, no padding
                answer = model.question_encoder.encode_sentence(tokens, torch.tensor([length]))
                answer_video = model.readout(answer, out.fused[b:b + 1])
                each.append(model.classifier(question_video[b:b + 1], sentence[b:b + 1], answer_video, answer)[0])
    expected = torch.stack(each).reshape(B, K)
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-5)
    # permuting the candidates permutes the scores
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        permuted = model(appearance, motion, question, question_len, candidates=candidates[:, order],
                         candidates_len=candidates_len[:, order]).logits
    torch.testing.assert_close(permuted, out.logits[:, order], rtol=1e-5, atol=1e-5)


def test_multiple_choice_candidate_lengths_are_clamped_to_one_and_the_padded_width():
    """A candidate of length 0 (an empty candidate text) reads its first token and a length beyond the padded width
    LA reads LA tokens: the same logits as lengths 1 and LA (which the per-candidate test above checks)."""
    model = tiny_model("multiple_choice", K).eval()
    appearance, motion, question, question_len, candidates, candidates_len = inputs(2)
    odd = candidates_len.clone()
    odd[0, 0], odd[1, 2], odd[2, 3] = 0, LA + 2, LA + 5
    clamped = candidates_len.clone()
    clamped[0, 0], clamped[1, 2], clamped[2, 3] = 1, LA, LA
    with torch.no_grad():
        out = model(appearance, motion, question, question_len, candidates=candidates, candidates_len=odd).logits
        expected = model(appearance, motion, question, question_len, candidates=candidates,
                         candidates_len=clamped).logits
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def _elu(x: np.ndarray) -> np.ndarray:
    return np.where(x > 0, x, np.expm1(np.minimum(x, 0)))


def test_candidate_scorer_matches_its_equation_in_numpy():
    """docs/model.md section 8, written in numpy from the weights alone: ``q' = W_q q + b_q``, ``a' = W_a a + b_a``,
    ``score = w_o . BN(ELU(W_h [V_q ; q' ; V_a ; a'] + b_h)) + b_o`` with BatchNorm's running statistics (eval)."""
    torch.manual_seed(3)
    scorer = tiny_model("multiple_choice", K).eval().classifier
    with torch.no_grad():
        scorer.norm.running_mean.uniform_(-0.5, 0.5)
        scorer.norm.running_var.uniform_(0.5, 2.0)
        scorer.norm.weight.uniform_(0.5, 1.5)
        scorer.norm.bias.uniform_(-0.3, 0.3)
    g = torch.Generator().manual_seed(4)
    question_video, sentence, candidate_video, candidate = (torch.randn(6, 32, generator=g) for _ in range(4))
    with torch.no_grad():
        got = scorer(question_video, sentence, candidate_video, candidate).numpy()
    w = {name: p.detach().double().numpy() for name, p in scorer.named_parameters()}
    bn = scorer.norm
    q = sentence.double().numpy() @ w["question_proj.weight"].T + w["question_proj.bias"]
    a = candidate.double().numpy() @ w["candidate_proj.weight"].T + w["candidate_proj.bias"]
    joint = np.concatenate([question_video.double().numpy(), q, candidate_video.double().numpy(), a], axis=1)
    hidden = _elu(joint @ w["hidden.weight"].T + w["hidden.bias"])
    normed = ((hidden - bn.running_mean.double().numpy()) / np.sqrt(bn.running_var.double().numpy() + bn.eps)
              * w["norm.weight"] + w["norm.bias"])
    expected = normed @ w["out.weight"][0] + w["out.bias"][0]
    assert got.shape == (6,)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_conditioned_readout_matches_its_equations():
    torch.manual_seed(0)
    model = tiny_model("multiple_choice", K).eval()
    r = model.readout
    sentence, clips = torch.randn(2, 32), torch.randn(2, C, 32)
    v = clips @ r.clip_proj.weight.T
    p = sentence @ r.sentence_proj.weight.T
    hidden = torch.nn.functional.elu(torch.cat([v, p[:, None] * v], -1) @ r.joint.weight.T + r.joint.bias)
    attention = torch.softmax(hidden @ r.score.weight.T + r.score.bias, dim=1)
    with torch.no_grad():
        torch.testing.assert_close(r(sentence, clips), (attention * clips).sum(1), rtol=1e-5, atol=1e-5)


def test_heads_refuse_wrong_candidates():
    appearance, motion, question, question_len, candidates, candidates_len = inputs()
    with pytest.raises(ValueError, match="needs candidates"):
        tiny_model("multiple_choice", K)(appearance, motion, question, question_len)
    with pytest.raises(ValueError, match="not multiple_choice"):
        tiny_model("open_ended", 7)(appearance, motion, question, question_len, candidates=candidates,
                                    candidates_len=candidates_len)
    with pytest.raises(ValueError, match="one output"):
        tiny_model("count", 3)
    with pytest.raises(ConfigError, match="auto"):
        tiny_model("auto", 7)


def test_mse_term_equals_a_hand_computation():
    logits = torch.tensor([[2.5], [0.0], [7.0]])
    answers = torch.tensor([3, 1, 10])
    out = type("Out", (), {"logits": logits})()
    value = loss_term("mse").fn(None, out, answers, None)
    assert value.item() == pytest.approx(((2.5 - 3) ** 2 + (0 - 1) ** 2 + (7 - 10) ** 2) / 3)
    objective = build_objective({"mse": {"weight": 2.0}})
    parts = compute_losses(objective, out, answers)
    assert parts["total"].item() == pytest.approx(2 * value.item())


def test_multiple_choice_ce_is_the_softmax_over_candidates():
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0, 0.0]])
    out = type("Out", (), {"logits": logits})()
    value = loss_term("ce").fn(None, out, torch.tensor([1]), None).item()
    probs = np.exp(logits.numpy()[0]) / np.exp(logits.numpy()[0]).sum()
    assert value == pytest.approx(-np.log(probs[1]), rel=1e-6)


def test_hinge_term_equals_hcrns_loss_by_hand():
    """HCRN's train.py (Action / Transition): ``sum max(0, 1 + s_k - s_right)`` over the batch and all 5 candidates,
    the right one included (a constant 1 per question). Row 1: only the right candidate's 1; row 2: 1 + 0.8 + 1.7 +
    1.1 + 0 = 4.6; total 5.6."""
    logits = torch.tensor([[1.0, 2.0, 0.5, -1.0, 0.0], [0.2, 0.0, 0.9, 0.3, -2.0]])
    answers = torch.tensor([1, 0])
    out = type("Out", (), {"logits": logits})()
    assert loss_term("hinge").fn(None, out, answers, None).item() == pytest.approx(5.6, rel=1e-6)
    # HCRN's flat layout, in numpy: scores (B * 5,), each compared with its question's right score
    rng = np.random.default_rng(0)
    scores, right = rng.normal(0, 1.5, (7, 5)), rng.integers(0, 5, 7)
    flat = scores.reshape(-1)
    index = np.repeat(np.arange(7), 5) * 5 + np.repeat(right, 5)
    expected = np.maximum(0.0, 1.0 + flat - flat[index]).sum()
    out = type("Out", (), {"logits": torch.from_numpy(scores).float()})()
    assert loss_term("hinge").fn(None, out, torch.from_numpy(right), None).item() == pytest.approx(expected, rel=1e-5)
    parts = compute_losses(build_objective({"hinge": {"weight": 0.5}}), out, torch.from_numpy(right))
    assert parts["total"].item() == pytest.approx(0.5 * expected, rel=1e-5)


@pytest.mark.parametrize("task", ["action", "transition"])
def test_tgif_qa_multiple_choice_configs_train_with_hcrns_hinge_loss(task):
    """Action / Transition (teacher and student) use the hinge term as HCRN, cross-entropy kept as an option; the
    other tasks keep their loss (frameqa ce, count mse)."""
    from utils.config import REPO_ROOT
    for role in ("teacher", "student"):
        cfg = load_config(REPO_ROOT / f"configs/tgif_qa_{task}_{role}.yml")
        assert cfg.losses.hinge == {"weight": 1.0} and not cfg.losses.get("ce")
        check_heads(cfg, "multiple_choice")
    cfg = load_config(REPO_ROOT / f"configs/tgif_qa_{task}_teacher.yml", ["losses.ce.weight=1.0", "losses.hinge=null"])
    assert cfg.losses.ce == {"weight": 1.0} and not cfg.losses.get("hinge")
    check_heads(cfg, "multiple_choice")
    frameqa = load_config(REPO_ROOT / "configs/tgif_qa_frameqa_teacher.yml").losses
    count = load_config(REPO_ROOT / "configs/tgif_qa_count_teacher.yml").losses
    assert frameqa.ce == {"weight": 1.0} and not frameqa.get("hinge")
    assert count.mse == {"weight": 1.0} and not count.get("hinge") and not count.get("ce")


@pytest.mark.parametrize("losses,head,key", [({"ce": {"weight": 1.0}}, "count", "losses.ce"),
                                             ({"ce": None, "hinge": {"weight": 1.0}}, "open_ended", "losses.hinge"),
                                             ({"ce": None, "hinge": {"weight": 1.0}}, "count", "losses.hinge"),
                                             ({"ce": None, "mse": {"weight": 1.0}}, "open_ended", "losses.mse"),
                                             ({"ce": None, "mse": {"weight": 1.0}}, "multiple_choice", "losses.mse")])
def test_loss_terms_that_do_not_fit_the_head_are_refused(losses, head, key):
    cfg = load_config(data={"losses": losses})
    with pytest.raises(ConfigError, match=f"'{key}'"):
        check_heads(cfg, head)


def test_model_head_auto_resolves_from_the_dataset_and_mismatches_are_refused(tmp_path):
    from train_fixtures import register_tiny_datasets
    from training.run_settings import resolve_head
    register_tiny_datasets()
    assert load_config(None).model.head == "open_ended"  # msvd-qa
    cfg = load_config(None, ["dataset.name=tiny-mc"])
    assert cfg.model.head == "multiple_choice" and resolve_head(cfg) == "multiple_choice"
    cfg = load_config(None, ["dataset.name=tiny-mc", "model.head=count"])
    with pytest.raises(ConfigError, match="'model.head' is count.*multiple_choice"):
        resolve_head(cfg)
    with pytest.raises(ConfigError, match="'dataset.name'.*registered: .*msvd-qa"):
        load_config(None, ["dataset.name=nosuch"])


def test_null_file_keys_derive_from_the_file_prefix():
    from preprocess.datasets.files import dataset_path
    from utils.config import REPO_ROOT
    cfg = load_config(None, ["dataset.name=msrvtt"])
    assert dataset_path(cfg, "vocab_json") == REPO_ROOT / "data/msrvtt-qa/msrvtt-qa_vocab.json"
    assert dataset_path(cfg, "val_question_pt") == REPO_ROOT / "data/msrvtt-qa/msrvtt-qa_val_questions.pt"
    cfg = load_config(None, ["dataset.data_dir=/x", "dataset.motion_feat=m.h5"])
    assert dataset_path(cfg, "motion_feat") == REPO_ROOT / "/x/m.h5"
    assert dataset_path(cfg, "appearance_feat").name == "msvd-qa_appearance_feat.h5"
    with pytest.raises(ConfigError, match="dataset.vocab_json"):
        load_config(None, ["dataset.vocab_json=3"])
