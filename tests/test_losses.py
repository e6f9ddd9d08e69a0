"""Losses (docs/model.md section 5) against independent loop/numpy computations."""
import numpy as np
import pytest
import torch
from torch import nn

from model import ModelOutput
from model.losses import build_objective, compute_losses, distillation, hsic, normalised_hsic, similarity


def numpy_hsic(indep_layers, joint_layers):
    """mean over layers of sum over samples of trace(R K1 R K2), with explicit loops."""
    values = []
    for x1_all, x2_all in zip(indep_layers, joint_layers):
        total = 0.0
        for x1, x2 in zip(x1_all, x2_all):
            c = x1.shape[0]
            r = np.eye(c) - np.ones((c, c)) / c
            k1, k2 = x1 @ x1.T, x2 @ x2.T
            total += np.trace(r @ k1 @ r @ k2)
        values.append(total)
    return np.mean(values)


def numpy_similarity(joint_a_layers, joint_m_layers):
    values = []
    for xa_all, xm_all in zip(joint_a_layers, joint_m_layers):
        diffs = []
        for xa, xm in zip(xa_all, xm_all):
            covs = []
            for x in (xa, xm):
                x = x - x.mean(axis=0, keepdims=True)
                x = x / np.linalg.norm(x, axis=1, keepdims=True)
                covs.append(x @ x.T)
            diffs.append((covs[0] - covs[1]) ** 2)
        values.append(np.mean(diffs))
    return np.mean(values)


def random_layers(g, b=3, c=4, d=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(b, c, d)) for _ in range(g)]


def as_torch(layers):
    return torch.tensor(np.stack(layers), dtype=torch.float32)


@pytest.mark.parametrize("g", [1, 3])
def test_hsic_matches_the_trace_formula(g):
    x1, x2 = random_layers(g, seed=1), random_layers(g, seed=2)
    np.testing.assert_allclose(hsic(as_torch(x1), as_torch(x2)).item(), numpy_hsic(x1, x2), rtol=1e-5)


def numpy_centred_kernel_alignment(indep_layers, joint_layers):
    """mean over layers and samples of trace(K1 H K2 H) / sqrt(trace(K1 H K1 H) trace(K2 H K2 H)), H = I - 1/C."""
    values = []
    for x1_all, x2_all in zip(indep_layers, joint_layers):
        for x1, x2 in zip(x1_all, x2_all):
            c = x1.shape[0]
            h = np.eye(c) - np.ones((c, c)) / c
            k1, k2 = x1 @ x1.T, x2 @ x2.T
            values.append(np.trace(k1 @ h @ k2 @ h) / np.sqrt(np.trace(k1 @ h @ k1 @ h) * np.trace(k2 @ h @ k2 @ h)))
    return np.mean(values)


@pytest.mark.parametrize("g", [1, 3])
def test_normalised_hsic_is_the_centred_kernel_alignment(g):
    x1, x2 = random_layers(g, seed=5), random_layers(g, seed=6)
    value = normalised_hsic(as_torch(x1), as_torch(x2)).item()
    np.testing.assert_allclose(value, numpy_centred_kernel_alignment(x1, x2), rtol=1e-5)
    scaled = normalised_hsic(1000 * as_torch(x1), 0.01 * as_torch(x2)).item()  # the raw HSIC moves by 1e2
    np.testing.assert_allclose(scaled, value, rtol=1e-4)
    assert 0 <= value <= 1
    np.testing.assert_allclose(normalised_hsic(as_torch(x1), as_torch(x1)).item(), 1.0, rtol=1e-5)


def test_the_hsic_term_normalises_when_asked():
    x = [random_layers(2, seed=s) for s in (7, 8, 9, 10)]
    out = ModelOutput(*(None,) * 4, *(tuple(torch.tensor(layer, dtype=torch.float32) for layer in layers)
                                      for layers in x))
    for normalise, expected in ((False, numpy_hsic(x[0], x[1]) + numpy_hsic(x[2], x[3])),
                                (True, numpy_centred_kernel_alignment(x[0], x[1])
                                 + numpy_centred_kernel_alignment(x[2], x[3]))):
        objective = build_objective({"hsic": {"weight": 1.0, "normalise": normalise}})
        losses = compute_losses(objective, out, torch.zeros(3, dtype=torch.long), None)
        np.testing.assert_allclose(losses["hsic"].item(), expected, rtol=1e-5)


def test_hsic_of_a_single_layer_tensor():
    x1, x2 = random_layers(1, seed=3), random_layers(1, seed=4)
    np.testing.assert_allclose(hsic(as_torch(x1)[0], as_torch(x2)[0]).item(), numpy_hsic(x1, x2), rtol=1e-5)


@pytest.mark.parametrize("g", [1, 3])
def test_similarity_matches_loops(g):
    xa, xm = random_layers(g, seed=5), random_layers(g, seed=6)
    np.testing.assert_allclose(similarity(as_torch(xa), as_torch(xm)).item(), numpy_similarity(xa, xm), rtol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_distillation_matches_kldivloss_batchmean(temperature):
    torch.manual_seed(0)
    teacher, student = torch.randn(3, 4, 6), torch.randn(3, 4, 6)
    expected = nn.KLDivLoss(reduction="batchmean")(torch.log_softmax(student / temperature, -1),
                                                   torch.softmax(teacher / temperature, -1))
    torch.testing.assert_close(distillation(teacher, student, temperature), expected)


def fake_output(g, b=3, c=4, d=5, answers=6, seed=0, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)

    def t(*shape):
        return torch.randn(*shape, generator=gen).requires_grad_(requires_grad)
    return ModelOutput(t(b, answers), t(b, c, d), t(b, c, d), t(b, c, d),
                       *(tuple(t(b, c, d) for _ in range(g)) for _ in range(4)))


LOSSES = {"ce": {"weight": 1.0}, "similarity": {"weight": 100.0}, "hsic": {"weight": 1e-6}}
DISTILL = {"kd_appearance": {"weight": 1.0, "temperature": 1.0}, "kd_motion": {"weight": 100.0, "temperature": 0.7}}
TRAIN = build_objective(LOSSES, DISTILL)                        # no teacher: the kd terms are reported as 0
KD = build_objective(LOSSES, DISTILL, teacher_given=True)


def numpy_parts(out, answers):
    logits = out.logits.detach().double().numpy()
    log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    ce = -np.mean(log_probs[np.arange(len(answers)), answers.numpy()])
    layers = [[x.detach().double().numpy() for x in layer] for layer in out[4:]]
    indep_a, joint_a, indep_m, joint_m = layers
    return ce, numpy_similarity(joint_a, joint_m), numpy_hsic(indep_a, joint_a) + numpy_hsic(indep_m, joint_m)


def test_teacher_total_weighting():
    out = fake_output(g=4)
    answers = torch.tensor([0, 5, 2])
    losses = compute_losses(TRAIN, out, answers)
    assert set(losses) == {"total", "ce", "similarity", "hsic", "kd_appearance", "kd_motion"}
    ce, sim, hsic_value = numpy_parts(out, answers)
    np.testing.assert_allclose(losses["ce"].item(), ce, rtol=1e-5)
    np.testing.assert_allclose(losses["similarity"].item(), sim, rtol=1e-5)
    np.testing.assert_allclose(losses["hsic"].item(), hsic_value, rtol=1e-5)
    np.testing.assert_allclose(losses["total"].item(), ce + 100 * sim + 1e-6 * hsic_value, rtol=1e-5)
    assert losses["kd_appearance"].item() == losses["kd_motion"].item() == 0.0
    assert all(v.dim() == 0 and v.dtype == torch.float32 for v in losses.values())


def test_student_total_adds_weighted_distillation_and_detaches_the_teacher():
    student = fake_output(g=1, seed=1, requires_grad=True)
    teacher = fake_output(g=4, seed=2, requires_grad=True)
    answers = torch.tensor([1, 1, 3])
    losses = compute_losses(KD, student, answers, teacher_out=teacher)
    kl = nn.KLDivLoss(reduction="batchmean")
    kd_a = kl(torch.log_softmax(student.appearance / 1.0, -1), torch.softmax(teacher.fused / 1.0, -1))
    kd_m = kl(torch.log_softmax(student.motion / 0.7, -1), torch.softmax(teacher.fused / 0.7, -1))
    torch.testing.assert_close(losses["kd_appearance"], kd_a)
    torch.testing.assert_close(losses["kd_motion"], kd_m)
    ce, sim, hsic_value = numpy_parts(student, answers)
    expected = ce + 100 * sim + 1e-6 * hsic_value + 1.0 * kd_a.item() + 100.0 * kd_m.item()
    np.testing.assert_allclose(losses["total"].item(), expected, rtol=1e-5)
    losses["total"].backward()
    assert teacher.fused.grad is None and teacher.logits.grad is None
    assert student.appearance.grad is not None and student.motion.grad is not None


def test_distillation_objective_without_teacher_output_is_an_error():
    with pytest.raises(ValueError, match="teacher_out"):
        compute_losses(KD, fake_output(g=1), torch.tensor([0, 1, 2]))


def test_low_precision_outputs_give_float32_losses():
    out = ModelOutput(*(x.bfloat16() if torch.is_tensor(x) else tuple(y.bfloat16() for y in x)
                        for x in fake_output(g=2)))
    losses = compute_losses(KD, out, torch.tensor([0, 1, 2]), teacher_out=out)
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses.values())


def test_autocast_does_not_lower_the_loss_precision():
    out = fake_output(g=2, d=64, seed=7)
    answers = torch.tensor([0, 1, 2])
    reference = compute_losses(KD, out, answers, teacher_out=out)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = compute_losses(KD, out, answers, teacher_out=out)
    for key, value in reference.items():
        torch.testing.assert_close(losses[key], value, rtol=1e-6, atol=1e-7, msg=key)


def official_hard_loss(out, answers, alpha, beta):
    """The official release's teacher loss, written as its training loop does: per graph layer (u * g of them) add
    HSIC(independent, joint) of appearance and of motion (summed over samples) and the similarity of the joint
    outputs, then ``CE + alpha * sum_sim / layers + beta * sum_hsic / layers``."""
    ce = torch.nn.functional.cross_entropy(out.logits.double(), answers).item()
    layers = len(out.indep_appearance)
    sum_hsic = sum_sim = 0.0
    for i in range(layers):
        for indep, joint in ((out.indep_appearance[i], out.joint_appearance[i]),
                             (out.indep_motion[i], out.joint_motion[i])):
            for x1, x2 in zip(indep.double().numpy(), joint.double().numpy()):
                c = x1.shape[0]
                r = np.eye(c) - np.ones((c, c)) / c
                sum_hsic += np.trace((r @ x1 @ x1.T) @ (r @ x2 @ x2.T))
        sum_sim += numpy_similarity([out.joint_appearance[i].double().numpy()],
                                    [out.joint_motion[i].double().numpy()])
    return ce + alpha * sum_sim / layers + beta * sum_hsic / layers


@pytest.mark.parametrize("g", [1, 4])
def test_total_matches_the_official_release_weighting(g):
    """alpha weights the similarity loss and beta HSIC, each divided by the number of graph layers. Distinct
    weights so that swapping them, or dropping the division, changes the result."""
    out = fake_output(g=g, seed=5)
    answers = torch.tensor([0, 5, 2])
    objective = build_objective({"ce": {"weight": 1.0}, "similarity": {"weight": 7.0}, "hsic": {"weight": 0.3}})
    total = compute_losses(objective, out, answers)["total"].item()
    np.testing.assert_allclose(total, official_hard_loss(out, answers, 7.0, 0.3), rtol=1e-5)


def test_similarity_of_a_single_layer_tensor():
    """(B, C, d) without the layer axis, C != d: the same value as the one-layer stack."""
    xa, xm = random_layers(1, c=3, d=6, seed=7), random_layers(1, c=3, d=6, seed=8)
    np.testing.assert_allclose(similarity(as_torch(xa)[0], as_torch(xm)[0]).item(), numpy_similarity(xa, xm),
                               rtol=1e-5)


# ---------------------------------------------------------------------------------------- the objective, by hand
from model import losses as L  # noqa: E402
from utils.config import ConfigError  # noqa: E402
from training.run_schema import load_config  # noqa: E402


def _probe(params, student, answers, teacher):
    return torch.tensor(2.0)


def test_register_loss_records_every_field(monkeypatch):
    monkeypatch.setattr(L, "_TERMS", dict(L._TERMS))
    assert L.register_loss("probe", params=L.DistillationParams, student=["a"], teacher=["fused"],
                           same_config=["module_dim"], heads=["count"])(_probe) is _probe
    term = L.loss_term("probe")
    assert term == L.LossTerm("probe", _probe, L.DistillationParams, ("a",), ("fused",), ("module_dim",), ("count",))
    assert all(type(v) is tuple for v in (term.student_fields, term.teacher_fields, term.same_config, term.heads))
    assert term.reads_teacher is True
    L.register_loss("probe", params=L.DistillationParams)(_probe)  # the same function again: accepted
    L.register_loss("plain")(_probe)
    plain = L.loss_term("plain")
    assert plain == L.LossTerm("plain", _probe, L.TermParams, (), (), (), ()) and plain.reads_teacher is False
    with pytest.raises(ValueError, match="^a loss term named 'probe' is already registered$"):
        L.register_loss("probe")(lambda *a: None)
    with pytest.raises(ValueError, match="^'total' is the weighted sum, not a term name$"):
        L.register_loss("total")


def test_unknown_term_names_the_key_and_the_registered_terms():
    with pytest.raises(ConfigError, match=r"^losses: unknown loss term 'nope' \(registered: ce, hinge, hsic, "
                                          r"kd_appearance, kd_motion, (\w+, )*mse, similarity\)$"):  # tests add some
        L.loss_term("nope")
    with pytest.raises(ConfigError, match=r"^distill\.losses\.nope: unknown loss term"):
        L.build_objective({"ce": {}}, {"nope": {}}, teacher_given=True)
    with pytest.raises(ConfigError, match=r"^losses\.nope: unknown loss term"):
        L.build_objective({"nope": {}})
    with pytest.raises(ConfigError, match=r"losses\.ce"):
        L.build_objective({"ce": {"weight": 1.0, "bogus": 2}})


def test_build_objective_by_hand():
    kd = {"kd_motion": {"weight": 100.0, "temperature": 0.7}}
    teacher = L.build_objective({"ce": {}, "hsic": {"weight": 1e-6}}, kd)
    assert teacher.part_names == ("total", "ce", "hsic", "kd_motion") and teacher.inactive == ("kd_motion",)
    assert teacher.weights == {"ce": 1.0, "hsic": 1e-6, "kd_motion": 0.0} and teacher.teacher_terms == ("kd_motion",)
    assert not teacher.reads_teacher
    distilled = L.build_objective({"ce": {}}, kd, teacher_given=True)
    assert [n for n, _, _ in distilled.terms] == ["ce", "kd_motion"] and distilled.inactive == ()
    assert distilled.terms[1][2] == L.DistillationParams(weight=100.0, temperature=0.7) and distilled.reads_teacher
    assert distilled.teacher_terms == ("kd_motion",)
    # a term in both sections: the one in losses is kept
    both = L.build_objective({"ce": {}, "kd_motion": {"weight": 3.0}}, kd, teacher_given=True)
    assert [(n, p.weight) for n, _, p in both.terms] == [("ce", 1.0), ("kd_motion", 3.0)]
    student = L.build_objective({"ce": {}, "kd_appearance": {}}, kd, drop_teacher_terms=True)
    assert [n for n, _, _ in student.terms] == ["ce"] and student.inactive == ("kd_appearance", "kd_motion")
    only_teacher_terms = L.build_objective({}, kd, teacher_given=True)
    assert [n for n, _, _ in only_teacher_terms.terms] == ["kd_motion"]
    with pytest.raises(ConfigError, match="^the objective has no loss term: config section 'losses' is empty$"):
        L.build_objective({}, {})
    with pytest.raises(ConfigError, match=r"^loss term\(s\) kd_motion, kd_appearance \(config section 'losses'\) read "
                                          r"a teacher, but none is given: set 'distill.teacher_ckpt' / --teacher_ckpt, or "
                                          r"move them under 'distill.losses' \(used only when a teacher is given\)$"):
        L.build_objective({"kd_motion": {}, "kd_appearance": {}})
    with pytest.raises(ConfigError, match=r"^a teacher is given \(distill.teacher_ckpt / --teacher_ckpt\) but no loss "
                                          r"term reads it: list the distillation terms under 'distill.losses' \(e.g. "
                                          r"kd_appearance, kd_motion\)$"):
        L.build_objective({"ce": {}}, None, teacher_given=True)


def test_objective_for_each_mode():
    cfg = load_config(None)
    assert [n for n, _, _ in L.objective_for(cfg, "kd").terms] == ["ce", "similarity", "hsic", "kd_appearance",
                                                                     "kd_motion"]
    for mode in ("teacher", "student"):
        objective = L.objective_for(cfg, mode)
        assert [n for n, _, _ in objective.terms] == ["ce", "similarity", "hsic"]
        assert objective.inactive == ("kd_appearance", "kd_motion")
    moved = load_config(None, ["losses.kd_motion.weight=2"])  # a teacher term in losses
    assert L.objective_for(moved, "student").inactive == ("kd_motion", "kd_appearance")  # listed once
    with pytest.raises(ConfigError, match="read a teacher, but none is given"):
        L.objective_for(moved, "teacher")


def test_check_outputs_names_the_missing_fields():
    objective = L.build_objective({"ce": {}}, {"kd_motion": {}}, teacher_given=True)
    objective.check_outputs(("logits", "motion"), ("fused",))
    objective.check_outputs(("logits", "motion"), None)  # teacher not checked
    with pytest.raises(ConfigError, match=r"^loss term 'kd_motion' reads the model's output field\(s\) motion, which "
                                          r"that model does not produce \(it has: logits, fused\)$"):
        objective.check_outputs(("logits", "fused"), ("fused",))
    with pytest.raises(ConfigError, match=r"^loss term 'kd_motion' reads the teacher's output field\(s\) fused, which "
                                          r"that model does not produce \(it has: logits, motion\)$"):
        objective.check_outputs(("logits", "motion"), ("logits", "motion"))


def test_check_heads_messages():
    L.check_heads(load_config(None), "open_ended")
    with pytest.raises(ConfigError, match=r"^config key 'losses.ce': the ce term fits the open_ended / multiple_choice "
                                          r"head\(s\), but model.head is count \(count configs use losses: \{ce: null, "
                                          r"mse: \{weight: 1.0\}\}\)$"):
        L.check_heads(load_config(None), "count")
    with pytest.raises(ConfigError, match=r"^config key 'losses.mse': the mse term fits the count head\(s\), but "
                                          r"model.head is open_ended \(count configs use"):
        L.check_heads(load_config(None, ["losses.ce=null", "losses.mse.weight=1"]), "open_ended")
    with pytest.raises(ConfigError, match=r"^config key 'losses.hinge': the hinge term fits the multiple_choice "
                                          r"head\(s\), but model.head is open_ended$"):
        L.check_heads(load_config(None, ["losses.hinge.weight=1"]), "open_ended")
    with pytest.raises(ConfigError, match=r"^config key 'distill.losses.hinge'"):
        L.check_heads(load_config(None, ["distill.losses.hinge.weight=1"]), "open_ended")


def test_compute_losses_by_hand():
    out = type("Out", (), {"logits": torch.tensor([[2.0, 0.0], [0.0, 2.0]])})()
    objective = L.build_objective({"ce": {"weight": 2.0}, "mse": {"weight": 0.5}}, {"kd_motion": {}})
    parts = L.compute_losses(objective, out, torch.tensor([0, 0]))
    ce = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(2.0))) / 2
    mse = ((2.0 - 0) ** 2 + (0.0 - 0) ** 2) / 2
    assert parts["ce"].item() == pytest.approx(ce) and parts["mse"].item() == pytest.approx(mse)
    assert parts["total"].item() == pytest.approx(2 * ce + 0.5 * mse)
    assert parts["kd_motion"].item() == 0.0 and parts["kd_motion"].dtype == torch.float32
    assert list(parts) == ["total", "ce", "mse", "kd_motion"]
    with pytest.raises(ValueError, match="^compute_losses: the objective reads a teacher but teacher_out is None$"):
        L.compute_losses(L.build_objective({"ce": {}}, {"kd_motion": {}}, teacher_given=True), out,
                         torch.tensor([0, 0]))


def test_normalised_hsic_without_a_layer_axis_and_on_small_inputs():
    """(B, C, d) inputs (no layer axis; C = 4 clips, d = 5 features, so centring over clips or over features and the
    two transposes differ), and inputs whose squared Gram norms multiply to far below 1 (the eps only guards a 0)."""
    x1, x2 = random_layers(1, seed=11)[0], random_layers(1, seed=12)[0]
    expected = numpy_centred_kernel_alignment([x1], [x2])
    got = normalised_hsic(torch.tensor(x1, dtype=torch.float32), torch.tensor(x2, dtype=torch.float32)).item()
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    small = normalised_hsic(0.1 * torch.tensor(x1, dtype=torch.float32), 0.1 * torch.tensor(x2, dtype=torch.float32))
    np.testing.assert_allclose(small.item(), expected, rtol=1e-4)  # ||K1||^2 ||K2||^2 shrinks by 1e-8


def test_loss_sections_merge_term_by_term_by_hand():
    """One config layer merged into a loss section: parameters update the earlier layer's (not the defaults), a
    new term takes its dataclass defaults, null removes a term (listed or not), and the inputs are not changed."""
    from model.losses import merge_loss_section
    defaults = {"ce": {"weight": 1.0}, "hsic": {"weight": 0.5, "normalise": False}}
    update = {"hsic": {"normalise": True}, "ce": None, "similarity": None, "kd_motion": {"weight": 2.0}}
    merged = merge_loss_section(defaults, update, "my.yml", "distill.losses")
    assert merged == {"hsic": {"weight": 0.5, "normalise": True}, "kd_motion": {"weight": 2.0, "temperature": 1.0}}
    assert defaults == {"ce": {"weight": 1.0}, "hsic": {"weight": 0.5, "normalise": False}}
    assert update["hsic"] == {"normalise": True}


@pytest.mark.parametrize("update, message", [
    ({"hsic": 3}, "my.yml: key 'losses.hsic' is a section of term parameters, got 3"),
    ({"hsic": {"nope": 1}}, "my.yml: unknown config key 'losses.hsic.nope' (known keys here: normalise, weight)"),
    ({"kd_motion": {"temperature": "warm"}}, "my.yml: key 'losses.kd_motion.temperature' expects float, got 'warm'"),
    ({"nope": {"weight": 1.0}}, "my.yml: key 'losses.nope': unknown loss term 'nope' (registered: ce, "),
])
def test_loss_section_errors_name_the_file_and_the_key(update, message):
    from model.losses import merge_loss_section
    from utils.config import ConfigError
    with pytest.raises(ConfigError) as error:
        merge_loss_section({"hsic": {"weight": 0.5, "normalise": False}}, update, "my.yml", "losses")
    assert str(error.value).startswith(message)


@pytest.mark.parametrize("section, cfg, message", [
    ("losses", {"losses": {"ce": {"weight": -1.0}}},
     "config key 'losses.ce.weight' must be a finite number >= 0, got -1.0"),
    ("distill.losses", {"distill": {"losses": {"kd_motion": {"weight": 1.0, "temperature": 0.0}}}},
     "config key 'distill.losses.kd_motion.temperature' must be a finite number > 0, got 0.0"),
    ("distill.losses", {"distill": {"losses": {"kd_appearance": {"weight": float("inf"), "temperature": 2.0}}}},
     "config key 'distill.losses.kd_appearance.weight' must be a finite number >= 0, got inf"),
    ("losses", {"losses": {"ce": {"weight": 0.0}, "hsic": {"weight": 2.0, "normalise": True}}}, None),
    ("distill.losses", {"distill": {"losses": {"kd_motion": {"weight": 0.0, "temperature": 0.5}}}}, None),
    ("distill.losses", {"distill": None, "losses": {"ce": {"weight": -1.0}}}, None),   # no distill section
    ("distill.losses", {"distill": {"losses": None}}, None),
    ("losses", {}, None),
])
def test_the_loss_sections_check_their_parameter_ranges(section, cfg, message):
    """The sections' checks, as registered and as built anew (LOSS_SECTIONS is built at import, where a mutation
    test's mutant is not active yet)."""
    from model.losses import LOSS_SECTIONS, _loss_section_check
    from utils.config import ConfigError
    for check in (LOSS_SECTIONS[section].check, _loss_section_check(section)):
        if message is None:
            check(cfg)
            continue
        with pytest.raises(ConfigError) as error:
            check(cfg)
        assert str(error.value) == message
