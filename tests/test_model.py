"""The model (docs/model.md sections 2-4): parameter counts, each equation against an independent small
computation, padding invariance, the per-video gather, no host syncs, and gradients at the paper's sizes."""
import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from model import ModelOutput, build_model
from model.dualvgr import ClipScores, DualVGRUnit, GraphLayer, IndependentJointFusion, QuestionAttention
from model.encoders import AppearanceEncoder, LengthMaskedBiLSTM, reverse_within_length
from model.fusion import MFB, AnswerClassifier, ClipReadout
from model.gat import GraphAttention
from model.losses import compute_losses, objective_for
from training.run_schema import load_config


pytestmark = pytest.mark.usefixtures("single_thread")


def n_params(module):
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_on_meta(model_cfg, num_tokens=4000, num_answers=1002):
    with torch.device("meta"):
        return n_params(build_model(model_cfg, num_tokens, num_answers))


def tiny_cfg(**model_overrides):
    """The base config's model section at toy sizes (d=16, w=6, D=10, k=2)."""
    model = load_config(None).model
    model.update(module_dim=16, word_dim=6, vision_dim=10, num_heads=2, mfb_dim=4, mfb_factor=2)
    model.update(model_overrides)
    return model


def tiny_batch(num_videos=3, clips=4, frames=5, vision_dim=10, num_tokens=20, seed=0):
    g = torch.Generator().manual_seed(seed)
    appearance = torch.randn(num_videos, clips, frames, vision_dim, generator=g)
    motion = torch.randn(num_videos, clips, vision_dim, generator=g)
    lengths = torch.tensor([5, 2, 7][:num_videos] + [3] * max(0, num_videos - 3))
    question = torch.randint(2, num_tokens, (num_videos, int(lengths.max())), generator=g)
    question[torch.arange(question.shape[1]) >= lengths[:, None]] = 0
    return appearance, motion, question, lengths


# ---------------------------------------------------------------- parameter counts (docs/model.md section 6)

def paper_cfg(graph_layers, mfb_factor=2):
    return load_config(None, [f"model.graph_layers={graph_layers}", f"model.mfb_factor={mfb_factor}",
                              "model.unit_layers=1"]).model


@pytest.mark.parametrize("graph_layers, expected", [(1, 23_189_116), (4, 30_294_700), (6, 35_031_756)])
def test_whole_model_parameter_counts(graph_layers, expected):
    assert count_on_meta(paper_cfg(graph_layers)) == expected


def test_meta_count_equals_a_real_build():
    cfg = paper_cfg(1)
    assert n_params(build_model(cfg, 4000, 1002)) == count_on_meta(cfg) == 23_189_116


def test_part_counts_and_increments():
    with torch.device("meta"):
        block = GraphAttention(768, 4, 0.15)
    assert n_params(block) == 592_132 == 4 * ((768 * 192 + 192) + (2 * 192 + 1))
    base = count_on_meta(paper_cfg(1))
    assert count_on_meta(paper_cfg(1, mfb_factor=4)) - base == 787_456
    assert count_on_meta(paper_cfg(1), num_tokens=4001) - base == 300
    assert count_on_meta(paper_cfg(1), num_answers=1003) - base == 769
    assert count_on_meta(paper_cfg(2)) - base == 4 * 592_132
    # a second unit brings its own question attention, clip scores, g graph layers and fusion
    d, w = 768, 300
    attention_and_scores = (d * d + d) + (d + 1) + 2 * (w * d + d)
    fusion = 2 * ((d * d + d) + d)
    assert attention_and_scores == 1_053_697 and fusion == 1_182_720
    two_units = load_config(None, ["model.graph_layers=2", "model.unit_layers=2", "model.mfb_factor=2"]).model
    assert count_on_meta(two_units) - count_on_meta(paper_cfg(2)) == attention_and_scores + 2 * 4 * 592_132 + fusion


@pytest.mark.parametrize("vocab", [(4000, 1002), (7000, 1002), (123, 45)])
def test_teacher_minus_student_from_the_config_files(vocab):
    teacher = load_config("configs/msvd_qa_teacher.yml").model
    student = load_config("configs/msvd_qa_student.yml").model
    assert count_on_meta(teacher, *vocab) - count_on_meta(student, *vocab) == 7_105_584


def test_paper_table_sizes_with_a_7000_word_vocabulary():
    assert round(count_on_meta(paper_cfg(1), 7000) / 1e6, 2) == 24.09
    assert round(count_on_meta(paper_cfg(4), 7000) / 1e6, 2) == 31.19


# ---------------------------------------------------------------- initialisation and GloVe

def test_initialisation():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(), 20, 7)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            fan_out, fan_in = module.weight.shape
            assert module.weight.abs().max() <= math.sqrt(6 / (fan_in + fan_out)) + 1e-6, name
            assert module.bias is None or not module.bias.any(), name
        if isinstance(module, nn.LSTM):
            for pname, p in module.named_parameters():
                if pname.startswith("bias"):
                    assert not p.any(), name + pname
                else:
                    assert p.abs().max() <= math.sqrt(6 / sum(p.shape)) + 1e-6, name + pname
        if isinstance(module, GraphAttention):
            d, hd = 16, 8
            assert module.head_weight.abs().max() <= math.sqrt(6 / (d + hd)) + 1e-6
            assert module.attn_weight.abs().max() <= math.sqrt(6 / (2 * hd + 1)) + 1e-6
            assert not module.head_bias.any() and not module.attn_bias.any()
    embedding = model.question_encoder.embedding.weight
    assert embedding.abs().max() <= 1 and embedding.std() > 0.4  # uniform(-1, 1): std 0.577


def test_load_glove_copies_and_checks_the_shape():
    model = build_model(tiny_cfg(), 20, 7)
    matrix = np.arange(20 * 6, dtype=np.float32).reshape(20, 6) / 100
    model.load_glove(matrix)
    assert torch.equal(model.question_encoder.embedding.weight, torch.from_numpy(matrix))
    with pytest.raises(ValueError, match=r"\(20, 5\).*\(20, 6\)"):
        model.load_glove(np.zeros((20, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="finite"):
        model.load_glove(np.full((20, 6), np.nan, dtype=np.float32))


def test_build_model_rejects_bad_configs():
    with pytest.raises(ValueError, match="model.num_heads"):
        build_model(tiny_cfg(num_heads=3), 20, 7)
    cfg = tiny_cfg()
    del cfg["mfb_dim"]
    with pytest.raises(ValueError, match="model.mfb_dim"):
        build_model(cfg, 20, 7)


# ---------------------------------------------------------------- encoders

def test_length_masked_bilstm_equals_packed_bidirectional_lstm():
    torch.manual_seed(0)
    ours = LengthMaskedBiLSTM(5, 4)
    reference = nn.LSTM(5, 4, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for suffix, lstm in (("", ours.forward_lstm), ("_reverse", ours.backward_lstm)):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(reference, f"{name}_l0{suffix}").copy_(getattr(lstm, f"{name}_l0"))
    x = torch.randn(3, 6, 5)
    lengths = torch.tensor([6, 2, 4])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    ref_out, (ref_h, _) = reference(packed)
    ref_out, _ = nn.utils.rnn.pad_packed_sequence(ref_out, batch_first=True, total_length=6)
    out, final = ours(x, lengths)
    torch.testing.assert_close(out, ref_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(final, torch.cat([ref_h[0], ref_h[1]], dim=1), rtol=1e-5, atol=1e-6)


def test_reverse_within_length():
    x = torch.arange(10.0).reshape(2, 5, 1)
    out = reverse_within_length(x, torch.tensor([3, 5]))[..., 0]
    assert out.tolist() == [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]]


def test_appearance_encoder_is_a_bilstm_over_frames_per_clip():
    torch.manual_seed(0)
    encoder = AppearanceEncoder(10, 8, 0.15, 0.18).eval()
    x = torch.randn(2, 3, 5, 10)
    out = encoder(x)
    assert out.shape == (2, 3, 8)
    for n in range(2):
        for c in range(3):
            _, (h, _) = encoder.lstm(torch.tanh(x[n, c])[None])
            torch.testing.assert_close(out[n, c], torch.cat([h[0, 0], h[1, 0]]), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- unit equations (eval mode, no dropout)

def test_question_attention_masks_and_renormalises():
    torch.manual_seed(0)
    attention = QuestionAttention(8)
    contextual, words = torch.randn(3, 5, 8), torch.randn(3, 5, 6)
    lengths = [5, 2, 3]
    mask = torch.arange(5) < torch.tensor(lengths)[:, None]
    with torch.no_grad():
        attended, weights = attention(contextual, words, mask)
    for b, n in enumerate(lengths):
        with torch.no_grad():
            logits = [float(attention.score(attention.proj(contextual[b, t]) / attention.proj(contextual[b, t]).norm()))
                      for t in range(5)]
        # the architecture's wording: softmax over all L, zero beyond the length, a / (sum + 1e-5)
        p = np.exp(np.array(logits) - max(logits))
        p /= p.sum()
        p[n:] = 0
        a = p / (p.sum() + 1e-5)
        np.testing.assert_allclose(weights[b].numpy(), a, rtol=1e-4, atol=1e-6)
        expected = sum(a[t] * words[b, t].numpy() for t in range(5))
        np.testing.assert_allclose(attended[b].numpy(), expected, rtol=1e-4, atol=1e-5)
        assert not weights[b, n:].any()


def test_clip_scores():
    torch.manual_seed(0)
    scores = ClipScores(6, 8)
    clips, question = torch.randn(2, 3, 8), torch.randn(2, 6)
    out = scores(clips, question)
    assert out.shape == (2, 3, 1)
    for b in range(2):
        projected = scores.proj.weight @ question[b] + scores.proj.bias
        for c in range(3):
            torch.testing.assert_close(out[b, c, 0], torch.sigmoid(clips[b, c] @ projected))


def loop_gat(block, x, scores):
    """GAT block (eval mode) with explicit per-head Linear layers and loops over i, j."""
    k, hd = block.num_heads, block.head_dim
    b_size, c_size, _ = x.shape
    out = torch.zeros_like(x)
    for h in range(k):
        w, bias = block.head_weight[h], block.head_bias[h]
        a_w, a_b = block.attn_weight[h], block.attn_bias[h]
        for b in range(b_size):
            proj = [w @ x[b, i] + bias for i in range(c_size)]
            for i in range(c_size):
                e = torch.stack([F.leaky_relu(a_w @ torch.cat([proj[i], proj[j]]) + a_b, 0.01)
                                 for j in range(c_size)])
                att = torch.softmax(e, dim=0)
                agg = sum(att[j] * proj[j] * scores[b, j, 0] for j in range(c_size))
                out[b, i, h * hd:(h + 1) * hd] = F.elu(agg)
    return out


def test_gat_block_hand_set_example():
    block = GraphAttention(4, 2, 0.15).eval()
    with torch.no_grad():
        block.head_weight.copy_(torch.tensor([[[1., 0, 0, 0], [0, 1, 0, 0]], [[0., 0, 1, 0], [0, 0, 0, -1]]]))
        block.head_bias.copy_(torch.tensor([[0., 0.5], [0., 0.]]))
        block.attn_weight.copy_(torch.tensor([[1., 0, 0, 0], [0., 0, 0, 2]]))
        block.attn_bias.copy_(torch.tensor([0., -1.]))
    x = torch.tensor([[[1., 2, 3, 4], [0, 0, 0, 0], [-1, 1, 2, -2]]])
    scores = torch.tensor([[[1.0], [0.5], [0.0]]])
    out = block(x, scores)
    torch.testing.assert_close(out, loop_gat(block, x, scores))
    # head 0 scores only x_i (e_ij constant in j): uniform attention, mean of S_j * h_j
    h0 = torch.tensor([[1., 2.5], [0., 0.5], [-1., 1.5]]) * scores[0]
    torch.testing.assert_close(out[0, :, :2], F.elu(h0.mean(0)).expand(3, 2))


def test_gat_block_random_against_loops():
    torch.manual_seed(0)
    block = GraphAttention(12, 3, 0.15).eval()
    with torch.no_grad():
        block.head_bias.normal_()
        block.attn_bias.normal_()
    x, scores = torch.randn(2, 4, 12), torch.rand(2, 4, 1)
    torch.testing.assert_close(block(x, scores), loop_gat(block, x, scores), rtol=1e-5, atol=1e-6)


def test_graph_layer_batches_its_four_blocks_exactly():
    torch.manual_seed(0)
    layer = GraphLayer(12, 3, 0.15).eval()
    with torch.no_grad():
        for block in layer.blocks():
            block.head_bias.normal_()
            block.attn_bias.normal_()
    ga, gm, sa, sm = torch.randn(2, 4, 12), torch.randn(2, 4, 12), torch.rand(2, 4, 1), torch.rand(2, 4, 1)
    out = layer(ga, sa, gm, sm)
    expected = (loop_gat(layer.appearance_independent, ga, sa), loop_gat(layer.appearance_joint, ga, sa),
                loop_gat(layer.motion_independent, gm, sm), loop_gat(layer.motion_joint, gm, sm))
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_graph_layer_blocks_draw_independent_dropout_masks():
    torch.manual_seed(0)
    layer = GraphLayer(12, 3, 0.5).train()
    with torch.no_grad():
        for block in layer.blocks()[1:]:
            for mine, first in zip(block.parameters(), layer.appearance_independent.parameters()):
                mine.copy_(first)
    x, s = torch.randn(2, 4, 12), torch.rand(2, 4, 1)
    indep_a, joint_a, indep_m, joint_m = layer(x, s, x, s)
    assert not torch.equal(indep_a, joint_a) and not torch.equal(indep_a, indep_m)
    layer.eval()
    indep_a, joint_a, indep_m, joint_m = layer(x, s, x, s)
    assert torch.equal(indep_a, joint_a) and torch.equal(indep_a, indep_m)


def test_independent_joint_fusion():
    torch.manual_seed(0)
    fusion = IndependentJointFusion(5)
    indep, joint = torch.randn(2, 3, 5), torch.randn(2, 3, 5)
    out = fusion(indep, joint)
    for b in range(2):
        for c in range(3):
            with torch.no_grad():
                s = [float(fusion.score.weight[0] @ torch.tanh(fusion.proj.weight @ z[b, c] + fusion.proj.bias))
                     for z in (joint, indep)]
            beta = np.exp(s) / np.exp(s).sum()
            expected = beta[0] * joint[b, c] + beta[1] * indep[b, c]
            torch.testing.assert_close(out[b, c], expected.float(), rtol=1e-5, atol=1e-6)


def test_unit_chains_layers_and_adds_the_residual():
    torch.manual_seed(0)
    unit = DualVGRUnit(8, 6, 2, graph_layers=3, gat_dropout=0.15).eval()
    va, vm = torch.randn(2, 3, 8), torch.randn(2, 3, 8)
    contextual, words = torch.randn(2, 4, 8), torch.randn(2, 4, 6)
    mask = torch.tensor([[True, True, True, False], [True, True, True, True]])
    out = unit(va, vm, contextual, words, mask)
    attended, _ = unit.question_attention(contextual, words, mask)
    sa, sm = unit.appearance_scores(va, attended), unit.motion_scores(vm, attended)
    ga, gm = va, vm
    for j, layer in enumerate(unit.graph_layers):
        torch.testing.assert_close(out.joint_appearance[j], layer.appearance_joint(ga, sa))
        torch.testing.assert_close(out.joint_motion[j], layer.motion_joint(gm, sm))
        ga, gm = layer.appearance_independent(ga, sa), layer.motion_independent(gm, sm)
        torch.testing.assert_close(out.indep_appearance[j], ga)
        torch.testing.assert_close(out.indep_motion[j], gm)
    torch.testing.assert_close(out.appearance, va + unit.appearance_fusion(ga, out.joint_appearance[-1]))
    torch.testing.assert_close(out.motion, vm + unit.motion_fusion(gm, out.joint_motion[-1]))


def test_stacked_units_have_their_own_weights():
    model = build_model(tiny_cfg(graph_layers=2, unit_layers=3), 20, 7).eval()
    layers = [layer for unit in model.units.units for layer in unit.graph_layers]
    assert len(layers) == 6 and len({id(p) for layer in layers for p in layer.parameters()}) == 6 * 4 * 4
    out = model(*tiny_batch())
    assert len(out.indep_appearance) == len(out.joint_motion) == 6
    assert not torch.equal(out.joint_appearance[4], out.joint_appearance[0])


def test_mfb():
    torch.manual_seed(0)
    mfb = MFB(6, mfb_dim=3, factor=2)
    va, vm = torch.randn(2, 4, 6), torch.randn(2, 4, 6)
    out = mfb(va, vm)
    for b in range(2):
        for c in range(4):
            x0 = F.elu(mfb.appearance_proj.weight @ va[b, c] + mfb.appearance_proj.bias)
            x1 = F.elu(mfb.motion_proj.weight @ vm[b, c] + mfb.motion_proj.bias)
            z = torch.stack([sum((x0 * x1)[i * 2 + r] for r in range(2)) for i in range(3)])
            expected = F.elu(mfb.out_proj.weight @ z + mfb.out_proj.bias)
            torch.testing.assert_close(out[b, c], expected, rtol=1e-5, atol=1e-6)


def test_clip_readout():
    torch.manual_seed(0)
    readout = ClipReadout(5, 0.15).eval()
    with torch.no_grad():
        readout.score.bias.fill_(0.3)
    clips = torch.randn(2, 4, 5)
    out = readout(clips)
    for b in range(2):
        s = torch.stack([readout.score.weight[0] @ F.elu(readout.proj.weight @ clips[b, c]) + readout.score.bias[0]
                         for c in range(4)])
        att = torch.softmax(s, 0)
        torch.testing.assert_close(out[b], sum(att[c] * clips[b, c] for c in range(4)), rtol=1e-5, atol=1e-6)


def test_classifier_eval_mode():
    torch.manual_seed(0)
    classifier = AnswerClassifier(4, 3, 0.15).eval()
    with torch.no_grad():
        classifier.norm.running_mean.normal_()
        classifier.norm.running_var.uniform_(0.5, 2)
        classifier.norm.weight.normal_()
        classifier.norm.bias.normal_()
    video, sentence = torch.randn(2, 4), torch.randn(2, 4)
    out = classifier(video, sentence)
    bn = classifier.norm
    for b in range(2):
        q = classifier.question_proj.weight @ sentence[b] + classifier.question_proj.bias
        hidden = F.elu(classifier.hidden.weight @ torch.cat([video[b], q]) + classifier.hidden.bias)
        hidden = (hidden - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
        torch.testing.assert_close(out[b], classifier.out.weight @ hidden + classifier.out.bias,
                                   rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- whole model

def test_output_shapes_and_type():
    model = build_model(tiny_cfg(graph_layers=2), 20, 7).eval()
    out = model(*tiny_batch())
    assert isinstance(out, ModelOutput)
    assert out.logits.shape == (3, 7)
    assert out.appearance.shape == out.motion.shape == out.fused.shape == (3, 4, 16)
    for layers in (out.indep_appearance, out.joint_appearance, out.indep_motion, out.joint_motion):
        assert isinstance(layers, tuple) and len(layers) == 2 and layers[0].shape == (3, 4, 16)


def test_padding_does_not_change_the_outputs():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(graph_layers=2), 20, 7).eval()
    appearance, motion, question, lengths = tiny_batch()
    reference = model(appearance, motion, question, lengths)
    padded = torch.cat([question, torch.zeros(3, 6, dtype=torch.long)], dim=1)
    garbage = padded.clone()
    garbage[torch.arange(padded.shape[1]) >= lengths[:, None]] = 5   # anything beyond the length is ignored
    for q in (padded, garbage):
        out = model(appearance, motion, q, lengths)
        for got, want in zip(out[:4], reference[:4]):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_video_index_equals_repeating_video_rows():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(graph_layers=2), 20, 7).eval()
    appearance, motion, _, _ = tiny_batch(num_videos=2)
    _, _, question, lengths = tiny_batch(num_videos=5, seed=1)
    video_index = torch.tensor([1, 0, 1, 1, 0])
    gathered = model(appearance, motion, question, lengths, video_index=video_index)
    repeated = model(appearance[video_index], motion[video_index], question, lengths)
    for got, want in zip(gathered, repeated):
        for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
            torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_bad_input_shapes_raise():
    model = build_model(tiny_cfg(), 20, 7)
    appearance, motion, question, lengths = tiny_batch()
    with pytest.raises(ValueError, match="motion"):
        model(appearance, motion[:, :2], question, lengths)
    with pytest.raises(ValueError, match="video row per question"):
        model(appearance[:2], motion[:2], question, lengths)
    with pytest.raises(ValueError, match="video_index"):
        model(appearance, motion, question, lengths, video_index=torch.tensor([0, 1]))


def test_forward_never_syncs_or_packs(monkeypatch):
    model = build_model(tiny_cfg(), 20, 7)
    batch = tiny_batch()

    def forbidden(*args, **kwargs):
        raise AssertionError("host sync or packing in forward")
    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__int__", "__float__", "__index__", "nonzero"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    monkeypatch.setattr(nn.utils.rnn, "pack_padded_sequence", forbidden)
    model(*batch, video_index=torch.tensor([2, 0, 1]))
    model.eval()(*batch)


def test_dropout_is_active_in_train_mode_only():
    torch.manual_seed(0)
    model = build_model(tiny_cfg(), 20, 7)
    batch = tiny_batch()
    assert not torch.equal(model(*batch).logits, model(*batch).logits)
    model.eval()
    assert torch.equal(model(*batch).logits, model(*batch).logits)


@pytest.mark.parametrize("config", ["configs/msvd_qa_teacher.yml", "configs/msvd_qa_student.yml"])
def test_forward_backward_at_paper_sizes(config):
    torch.manual_seed(0)
    cfg = load_config(config)
    model = build_model(cfg.model, num_question_tokens=30, num_answers=11)
    appearance, motion = torch.randn(2, 8, 16, 2048), torch.randn(2, 8, 2048)
    question = torch.tensor([[5, 6, 7, 8, 9, 10], [11, 12, 13, 0, 0, 0]])
    out = model(appearance, motion, question, torch.tensor([6, 3]))
    g = cfg.model.graph_layers
    assert out.logits.shape == (2, 11) and out.fused.shape == (2, 8, 768) and len(out.joint_motion) == g
    compute_losses(objective_for(cfg, "teacher"), out, torch.tensor([1, 4]))["total"].backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.question_encoder.embedding.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- clip order (docs/demo.md, "Clip order")
@pytest.mark.parametrize("graph_layers", [1, 4])
def test_the_answer_does_not_depend_on_the_order_of_the_clips(graph_layers):
    """The clips are graph nodes pooled by attention: permuting a video's clips leaves the logits unchanged (up to
    rounding), so no model of this kind can tell the first half of a video from the second."""
    model = build_model(tiny_cfg(graph_layers=graph_layers, head="open_ended"), 20, 7).eval()
    appearance, motion, question, lengths = tiny_batch()
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        logits = model(appearance, motion, question, lengths).logits
        permuted = model(appearance[:, order], motion[:, order], question, lengths).logits
    torch.testing.assert_close(permuted, logits, rtol=1e-5, atol=1e-6)
