"""model/cpu_ops.py: the fast float32 CPU operators compute torch's functions (values and gradients), and a whole
model gives the same outputs and gradients with them as with torch's own operators."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from model import build_model, cpu_ops
from utils.config import REPO_ROOT, ConfigError
from training.run_schema import load_config


pytestmark = pytest.mark.usefixtures("single_thread")


def graph_names(tensor) -> set:
    """Names of the autograd nodes that produced ``tensor``."""
    names, stack = set(), [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and type(node).__name__ not in names:
            names.add(type(node).__name__)
            stack.extend(next_node for next_node, _ in node.next_functions)
    return names


def grads(output, inputs):
    """Gradients of a fixed random projection of ``output`` with respect to ``inputs``."""
    weights = torch.randn(output.shape, generator=torch.Generator().manual_seed(1))
    return torch.autograd.grad((output * weights).sum(), inputs)


def test_the_onednn_product_is_in_use_on_this_build():
    assert cpu_ops._ONEDNN_LINEAR is not None


@pytest.mark.parametrize("with_bias", [True, False])
def test_linear_equals_f_linear_in_value_and_gradient(with_bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, 7, generator=g, requires_grad=True)
    w = torch.randn(4, 7, generator=g, requires_grad=True)
    b = torch.randn(4, generator=g, requires_grad=True) if with_bias else None
    params = [x, w] + ([b] if with_bias else [])
    ours, reference = cpu_ops.linear(x, w, b), F.linear(x, w, b)
    assert ours.shape == (3, 5, 4) and "_OneDNNLinearBackward" in graph_names(ours)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads(ours, params), grads(reference, params)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_linear_skips_gradients_nobody_asked_for():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(6, 3, generator=g), torch.randn(2, 3, generator=g, requires_grad=True)
    (grad_w,) = grads(cpu_ops.linear(x, w), [w])
    torch.testing.assert_close(grad_w, grads(F.linear(x, w), [w])[0], rtol=1e-5, atol=1e-5)


def test_linear_falls_back_to_torch_off_float32():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(6, 3, generator=g, dtype=torch.float64), torch.randn(2, 3, generator=g, dtype=torch.float64)
    assert torch.equal(cpu_ops.linear(x, w), F.linear(x, w))
    empty = torch.randn(0, 3)
    assert cpu_ops.linear(empty, w.float()).shape == (0, 2)


def test_linear_module_is_an_nn_linear_with_the_same_parameters():
    layer = cpu_ops.Linear(5, 3)
    assert isinstance(layer, nn.Linear) and [n for n, _ in layer.named_parameters()] == ["weight", "bias"]
    x = torch.randn(4, 5)
    torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-6)


def test_batched_linear_equals_one_linear_per_block():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, 5, generator=g, requires_grad=True)
    w = torch.randn(3, 4, 5, generator=g, requires_grad=True)
    b = torch.randn(3, 4, generator=g, requires_grad=True)
    ours = cpu_ops.batched_linear(x, w, b)
    reference = torch.stack([F.linear(x[i], w[i], b[i]) for i in range(3)])
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads(ours, [x, w, b]), grads(reference, [x, w, b])):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    doubles = [t.detach().double() for t in (x, w, b)]
    torch.testing.assert_close(cpu_ops.batched_linear(*doubles),
                               torch.stack([F.linear(doubles[0][i], doubles[1][i], doubles[2][i]) for i in range(3)]))


def test_elu_matches_expm1_closely_everywhere():
    x = torch.cat([torch.linspace(-30, 30, 2001), torch.tensor([-1e-8, -1e-6, -1e-4, -1e-2, 0.0, 1e-6, -100.0])])
    x = x.requires_grad_()
    ours = cpu_ops.elu(x)
    exact = torch.where(x.detach() > 0, x.detach().double(), torch.expm1(x.detach().double()))
    relative = ((ours.detach().double() - exact).abs() / exact.abs().clamp(min=1e-30))
    assert relative.max() < 1e-6                                   # F.elu's own float32 result is this close too
    torch.testing.assert_close(ours, F.elu(x), rtol=1e-6, atol=1e-7)
    (grad,) = grads(ours, [x])
    torch.testing.assert_close(grad, grads(F.elu(x), [x])[0], rtol=1e-6, atol=1e-7)
    assert torch.isfinite(grad).all()


def test_elu_refuses_double_backward():
    x = torch.randn(5, requires_grad=True)
    (grad,) = torch.autograd.grad(cpu_ops.elu(x).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        grad.sum().backward()


def test_dropout_keeps_with_probability_one_minus_p_and_rescales():
    torch.manual_seed(0)
    layer = cpu_ops.Dropout(0.3)
    assert isinstance(layer, nn.Dropout)
    x = torch.rand(400, 1000) + 0.5
    x.requires_grad_()
    out = layer(x)
    kept = out != 0
    assert abs(kept.float().mean().item() - 0.7) < 0.005            # 400,000 draws: 5 standard deviations ~ 0.004
    torch.testing.assert_close(out[kept], x[kept] / 0.7)
    (grad,) = grads(out, [x])
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(grad, weights * kept / 0.7)
    assert not torch.equal(layer(x), out)                            # a new mask every call
    layer.eval()
    assert torch.equal(layer(x), x)


def test_dropout_edge_probabilities_and_other_dtypes():
    x = torch.randn(50, 20)
    assert torch.equal(cpu_ops.Dropout(0.0)(x), x)
    assert torch.equal(cpu_ops.Dropout(1.0)(x), torch.zeros_like(x))
    doubles = cpu_ops.Dropout(0.5)(x.double())
    assert doubles.dtype == torch.float64 and set(torch.unique(doubles / x.double()).tolist()) <= {0.0, 2.0}


def test_dropout_of_bf16_tensors_draws_the_same_float32_mask():
    """bf16 inputs (CPU autocast outputs) take the fast mask too: the float32 draw, so the same mask as float32."""
    x = torch.randn(200, 50)
    torch.manual_seed(4)
    ours = cpu_ops.Dropout(0.3)(x.bfloat16())
    torch.manual_seed(4)
    reference = cpu_ops.Dropout(0.3)(x)
    assert ours.dtype == torch.bfloat16
    assert torch.equal(ours != 0, reference != 0)
    torch.testing.assert_close(ours.float(), reference, rtol=2 ** -6, atol=0)  # x, 1 / (1 - p), product rounded
    assert 0.65 < (ours != 0).float().mean() < 0.75


def test_a_whole_model_equals_the_model_on_torch_operators():
    """Eval mode (no dropout): every output and every parameter gradient as with F.linear / baddbmm / F.elu.

    The gradients are those of CE plus fixed random projections of all outputs. (Not of the similarity loss: in eval
    mode the graph layers after the first give every clip the same feature up to rounding, and the similarity loss
    normalises the clip-centred features, i.e. that rounding noise.)
    """
    torch.manual_seed(0)
    cfg = load_config(None, ["model.module_dim=32", "model.word_dim=8", "model.vision_dim=24", "model.mfb_dim=8",
                             "model.graph_layers=2"])
    model = build_model(cfg.model, num_question_tokens=20, num_answers=7).eval()
    appearance, motion = torch.randn(3, 4, 5, 24), torch.randn(3, 4, 24)
    question, lengths = torch.randint(2, 20, (4, 6)), torch.tensor([6, 3, 5, 1])
    video_index, answers = torch.tensor([0, 2, 2, 1]), torch.tensor([1, 4, 6, 2])

    def run():
        out = model(appearance, motion, question, lengths, video_index)
        tensors = [out.logits, out.appearance, out.motion, out.fused, *out.indep_appearance, *out.joint_appearance,
                   *out.indep_motion, *out.joint_motion]
        g = torch.Generator().manual_seed(1)
        loss = F.cross_entropy(out.logits, answers) + sum((t * torch.randn(t.shape, generator=g)).sum()
                                                          for t in tensors)
        return tensors, torch.autograd.grad(loss, list(model.parameters()))

    fast_out, fast_grads = run()
    cpu_ops.set_cpu_fast_path(False)
    try:
        torch_out, torch_grads = run()
    finally:
        cpu_ops.set_cpu_fast_path("auto")
    for got, want in zip(fast_out, torch_out):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for (name, _), got, want in zip(model.named_parameters(), fast_grads, torch_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5, msg=name)


def test_torch_compile_tracing_takes_torch_operators(monkeypatch):
    """Inductor lowers the oneDNN product only for constant weights: while torch.compile traces, F.linear is used."""
    x, w = torch.randn(6, 3), torch.randn(2, 3, requires_grad=True)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    out = cpu_ops.linear(x, w)
    assert "_OneDNNLinearBackward" not in graph_names(out) and "_TanhELUBackward" not in graph_names(cpu_ops.elu(out))


@pytest.fixture()
def fast_path_off():
    cpu_ops.set_cpu_fast_path(False)
    yield
    cpu_ops.set_cpu_fast_path("auto")


def test_the_switch_off_gives_torch_operators_exactly(fast_path_off):
    torch.manual_seed(0)
    x, w, b = torch.randn(6, 3, requires_grad=True), torch.randn(2, 3), torch.randn(2)
    out = cpu_ops.linear(x, w, b)
    assert torch.equal(out, F.linear(x, w, b)) and "_OneDNNLinearBackward" not in graph_names(out)
    assert torch.equal(cpu_ops.elu(x), F.elu(x)) and "_TanhELUBackward" not in graph_names(cpu_ops.elu(x))
    xs, ws, bs = torch.randn(2, 4, 3), torch.randn(2, 5, 3), torch.randn(2, 5)
    assert torch.equal(cpu_ops.batched_linear(xs, ws, bs), torch.baddbmm(bs[:, None, :], xs, ws.transpose(1, 2)))
    layer = cpu_ops.Dropout(0.5)
    torch.manual_seed(1)
    ours = layer(x)
    torch.manual_seed(1)
    assert torch.equal(ours, F.dropout(x, 0.5))


def test_the_switch_on_takes_the_fast_operators():
    cpu_ops.set_cpu_fast_path(True)
    assert cpu_ops.cpu_fast_path_enabled()
    out = cpu_ops.linear(torch.randn(6, 3), torch.randn(2, 3, requires_grad=True))
    assert "_OneDNNLinearBackward" in graph_names(out)
    cpu_ops.set_cpu_fast_path("auto")


def test_the_switch_from_config_and_environment():
    assert load_config(None, ["model.cpu_fast_path=false"]).model.cpu_fast_path is False
    with pytest.raises(ConfigError, match="model.cpu_fast_path"):
        load_config(None, ["model.cpu_fast_path=sometimes"])
    with pytest.raises(ValueError, match="model.cpu_fast_path"):
        cpu_ops.set_cpu_fast_path("sometimes")
    env = {**os.environ, "OMP_NUM_THREADS": "1", cpu_ops.FAST_PATH_ENV: "0"}
    result = subprocess.run([sys.executable, "-c", "from model import cpu_ops; print(cpu_ops.cpu_fast_path_enabled())"],
                            cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result.stderr
