"""model/attention.py: the attention weights read at predict time, against the equations computed here by hand, the
softmaxes summing to 1, the forward unchanged and no hook left behind."""
import pytest
import torch
from torch.nn import functional as F

from model import build_model
from model.attention import GRAPH_BLOCKS, record_attention
from test_model import tiny_batch, tiny_cfg

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_model(seed=0, **overrides):
    torch.manual_seed(seed)
    return build_model(tiny_cfg(**overrides), 20, 7).eval()


def recorded(model, batch):
    with torch.no_grad(), record_attention(model) as rec:
        out = model(*batch)
    return out, rec.maps()


def gat_rows_by_hand(block, x):
    """Attention of one GAT block (docs/model.md 3.3) from its equations: per head h, x_h = W_h x + b_h,
    e_ij = LeakyReLU_0.01(a_h . [x_h,i ; x_h,j] + c_h), softmax over j. x (B, C, d) -> (B, k, C, C)."""
    k = block.num_heads
    rows = []
    for h in range(k):
        xh = x @ block.head_weight[h].T + block.head_bias[h]                     # (B, C, d/k)
        a_i, a_j = block.attn_weight[h].chunk(2)
        e = (xh @ a_i)[:, :, None] + (xh @ a_j)[:, None, :] + block.attn_bias[h]
        rows.append(torch.softmax(torch.where(e > 0, e, 0.01 * e), dim=-1))
    return torch.stack(rows, dim=1)


def test_shapes_and_softmaxes_sum_to_one():
    model = tiny_model(graph_layers=3, unit_layers=2)
    batch = tiny_batch()
    _, maps = recorded(model, batch)
    b, c, l = batch[2].shape[0], batch[0].shape[1], batch[2].shape[1]
    assert maps.question.shape == (2, b, l)
    assert maps.clip_scores.shape == (2, 2, b, c)
    assert maps.graph.shape == (6, len(GRAPH_BLOCKS), b, 2, c, c)
    assert maps.readout.shape == (b, c)
    lengths = batch[3]
    valid = torch.arange(l) < lengths[:, None]
    assert torch.allclose(maps.question.sum(-1), torch.full((2, b), 1 / (1 + 1e-5)), atol=1e-6)
    assert (maps.question[:, ~valid] == 0).all()
    assert torch.allclose(maps.graph.sum(-1), torch.ones(maps.graph.shape[:-1]), atol=1e-5)
    assert torch.allclose(maps.graph_over_clips().sum(-1), torch.ones(6, 4, b), atol=1e-5)
    assert torch.allclose(maps.readout.sum(-1), torch.ones(b), atol=1e-5)
    assert ((maps.clip_scores > 0) & (maps.clip_scores < 1)).all()
    single = maps.select(1)
    assert torch.equal(single.graph[:, :, 0], maps.graph[:, :, 1]) and single.readout.shape == (1, c)


def test_weights_equal_the_equations():
    """Each recorded weight against its equation computed here from the module's parameters and inputs."""
    model = tiny_model(graph_layers=2)
    appearance, motion, question, lengths = tiny_batch()
    with torch.no_grad():
        out, maps = recorded(model, (appearance, motion, question, lengths))
        words, contextual, _ = model.question_encoder(question, lengths)
        unit = model.units.units[0]
        qa = unit.question_attention
        logits = qa.score(F.normalize(qa.proj(contextual), dim=-1))[..., 0]
        valid = torch.arange(question.shape[1]) < lengths[:, None]
        a = torch.softmax(logits.masked_fill(~valid, float("-inf")), dim=1)
        assert torch.allclose(maps.question[0], a / (a.sum(1, keepdim=True) + 1e-5), atol=1e-6)
        # first graph layer reads the encoded clips: V_a = appearance encoder, V_m = motion projection
        v_a, v_m = model.appearance_encoder(appearance), model.motion_encoder(motion)
        layer = unit.graph_layers[0]
        for n, (block, x) in enumerate(zip(layer.blocks(), (v_a, v_a, v_m, v_m))):
            assert torch.allclose(maps.graph[0, n], gat_rows_by_hand(block, x), atol=1e-5), GRAPH_BLOCKS[n]
        attended = (a[:, :, None] / (a.sum(1, keepdim=True)[:, :, None] + 1e-5) * words).sum(1)
        s_a = torch.sigmoid((v_a * unit.appearance_scores.proj(attended)[:, None]).sum(-1))
        assert torch.allclose(maps.clip_scores[0, 0], s_a, atol=1e-5)
        # the readout: V_all = sum_c att_c V_c must be what the readout module returns
        assert torch.allclose((maps.readout[:, :, None] * out.fused).sum(1), model.readout(out.fused), atol=1e-5)
        r = model.readout
        by_hand = torch.softmax(r.score(F.elu(r.proj(out.fused)))[..., 0], dim=1)
        assert torch.allclose(maps.readout, by_hand, atol=1e-5)


def test_forward_unchanged_and_hooks_removed():
    model = tiny_model()
    batch = tiny_batch()
    with torch.no_grad():
        plain = model(*batch).logits
        recorded_logits = recorded(model, batch)[0].logits
    assert torch.equal(plain, recorded_logits)
    assert all(not m._forward_hooks for m in model.modules())


def test_refused_in_training_mode():
    model = tiny_model().train()
    with pytest.raises(ValueError, match="eval mode"):
        with record_attention(model):
            pass


def test_model_bytes_on_meta_equals_the_built_model():
    """training/checkpoint.py counts a model's bytes on the meta device with its initialisation skipped: the count
    must be the built model's."""
    from training.checkpoint import model_bytes
    cfg = tiny_cfg(graph_layers=3)
    model = build_model(cfg, 20, 7)
    assert model_bytes(cfg, 20, 7) == sum(t.numel() * t.element_size() for t in model.state_dict().values())


def test_checkpoint_model_built_without_initialisation_equals_a_plain_load():
    """build_checkpoint_model builds on the meta device and takes the checkpoint's tensors: same tensors, same
    trainable parameters, same outputs as a model built normally and loaded."""
    from training.checkpoint import build_checkpoint_model
    cfg = dict(tiny_cfg(graph_layers=2))
    model = tiny_model(graph_layers=2)
    ckpt = {"model": model.state_dict(), "model_config": {"name": "dualvgr", **cfg}, "num_question_tokens": 20,
            "num_answers": 7}
    loaded = build_checkpoint_model(ckpt, "in memory", "test").eval()
    assert all(not t.is_meta for t in (*loaded.parameters(), *loaded.buffers()))
    assert [p.requires_grad for p in loaded.parameters()] == [p.requires_grad for p in model.parameters()]
    batch = tiny_batch()
    with torch.no_grad():
        assert torch.equal(loaded(*batch).logits, model(*batch).logits)
