"""The motion backbone built from the pretrained 2D EfficientNet-Lite0 (efficientnet_lite0_motion): its clip
feature against the formula computed with loops, and on rendered clips: still shapes give no motion, opposite
directions give opposite shifts, a faster shape more change."""
import numpy as np
import pytest
import torch

from preprocess.backbones import get_backbone, resolve_weights
from preprocess.backbones.efficientnet_lite0_motion import CHANNELS, TemporalDifferenceFeatures
from preprocess.synthetic.render import render_frames

pytestmark = pytest.mark.usefixtures("single_thread")


def loop_features(maps: np.ndarray) -> np.ndarray:
    """maps (T, c, H, W) of one clip -> [energy, shift_x, shift_y, |shift_x|, |shift_y|] with explicit loops."""
    t, c, h, w = maps.shape
    out = np.zeros((5, c))
    for k in range(c):
        out[0, k] = np.mean([np.abs(maps[s + 1, k] - maps[s, k]).mean() for s in range(t - 1)])
        change = maps[-1, k] - maps[0, k]
        for i in range(h):
            for j in range(w):
                x, y = -1 + 2 * j / (w - 1), -1 + 2 * i / (h - 1)
                out[1, k] += x * change[i, j] / (h * w)
                out[2, k] += y * change[i, j] / (h * w)
    out[3], out[4] = np.abs(out[1]), np.abs(out[2])
    return out.reshape(-1)


def test_clip_feature_matches_the_formula(monkeypatch):
    network = TemporalDifferenceFeatures((64, 64))
    monkeypatch.setattr(network, "feature_maps", lambda frames: frames[:, :2].repeat(1, 3, 1, 1) ** 2)  # c = 6
    clips = torch.randn(2, 3, 5, 4, 6, generator=torch.Generator().manual_seed(0))  # (N, 3, T, H, W)
    features = network(clips).numpy()
    for n in range(2):
        maps = (clips[n].transpose(0, 1)[:, :2].repeat(1, 3, 1, 1) ** 2).numpy()  # (T, 6, H, W)
        np.testing.assert_allclose(features[n], loop_features(maps.astype(np.float64)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="at least 2 frames"):
        network(clips[:, :, :1])


def clip(direction: tuple[float, float], speed: float, frames: int = 4) -> np.ndarray:
    """uint8 (frames, 64, 64, 3): a red square starting at the centre, moving ``speed`` px per frame."""
    centres = np.array([[32 + direction[0] * speed * t, 32 + direction[1] * speed * t] for t in range(frames)])
    return render_frames([{"shape": "square", "color": "red", "positions": centres}], 10, 64, frames)


def test_rendered_motion_shows_in_the_features():
    backbone = get_backbone("efficientnet_lite0_motion")
    assert backbone.kind == "motion" and backbone.feature_dim == 5 * CHANNELS
    extractor = backbone.build_extractor(resolve_weights(backbone, None, False), seed=0)
    clips = np.stack([clip((0, 0), 0), clip((1, 0), 2), clip((-1, 0), 2), clip((1, 0), 5), clip((0, 1), 2)])
    with torch.no_grad():
        features = extractor(torch.from_numpy(clips)).reshape(5, 5, CHANNELS)
    energy, shift_x, shift_y = features[:, 0], features[:, 1], features[:, 2]
    assert energy[0].abs().max() == 0 and shift_x[0].abs().max() == 0  # a still shape
    cosine = torch.nn.functional.cosine_similarity
    assert cosine(shift_x[1], shift_x[2], dim=0) < -0.5        # right vs left: opposite x-shifts
    assert shift_x[4].norm() < 0.5 * shift_x[1].norm()         # moving down: little x-shift ...
    assert shift_y[4].norm() > 2 * shift_y[1].norm()           # ... and a y-shift
    assert energy[3].sum() > 1.5 * energy[1].sum()             # faster: more change per frame
