"""The 3D ResNeXt-101 matches the published Kinetics checkpoint tensor for tensor; such a checkpoint loads safely."""
import hashlib
import pickle

import pytest
import torch

from preprocess.backbones import WeightsError, build_extractor
from preprocess.resnext3d import CheckpointError, load_kinetics_weights, resnext101_3d

# sha256 of the rows "name<TAB>shape" (shape as 64x3x7x7x7), one per line, of the team's reference listing
# shared/reference/resnext101_kinetics_state_dict.tsv, in its order, fc.* left out: 520 rows.
REFERENCE_ROWS_SHA256 = "7a795163f6920943ca3256733ca69a1d3b2ecf8860d7175ef65d8bc47ebcd469"
TRUNK_PARAMETERS = 47_521_216  # learnable, without the classifier
KINETICS_CLASSES = 400


pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return resnext101_3d().eval()


def test_state_dict_equals_the_published_checkpoint(model):
    rows = [f"{name}\t{'x'.join(map(str, tensor.shape))}" for name, tensor in model.state_dict().items()]
    assert len(rows) == 520
    assert hashlib.sha256(("\n".join(rows) + "\n").encode()).hexdigest() == REFERENCE_ROWS_SHA256
    shapes = {name: tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7, 7)
    assert shapes["layer1.0.conv2.weight"] == (128, 4, 3, 3, 3)  # 32 groups of 4 channels
    assert shapes["layer3.22.conv3.weight"] == (1024, 512, 1, 1, 1)  # 23 blocks in layer3
    assert shapes["layer4.0.downsample.0.weight"] == (2048, 1024, 1, 1, 1)  # shortcut B
    assert not any(name.endswith("num_batches_tracked") for name in shapes)


def test_parameter_count(model):
    trunk = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trunk == TRUNK_PARAMETERS
    # The reference listing's "48,340,816" is this trunk plus the 400-way Kinetics classifier fc (2048*400 + 400).
    assert trunk + 2048 * KINETICS_CLASSES + KINETICS_CLASSES == 48_340_816


def test_pooled_feature_of_a_full_size_clip(model):
    with torch.inference_mode():
        features = model(torch.randn(1, 3, 16, 112, 112))
    assert features.shape == (1, 2048) and torch.isfinite(features).all() and (features >= 0).all()


def _published_checkpoint(model) -> dict:
    """A checkpoint laid out like resnext-101-kinetics.pth: DataParallel names, the classifier, training metadata."""
    generator = torch.Generator().manual_seed(1)
    state = {f"module.{name}": torch.randn(tensor.shape, generator=generator) for name, tensor in
             model.state_dict().items()}
    state["module.fc.weight"] = torch.randn(KINETICS_CLASSES, 2048, generator=generator)
    state["module.fc.bias"] = torch.randn(KINETICS_CLASSES, generator=generator)
    return {"epoch": 200, "arch": "resnext-101", "state_dict": state}


def test_published_format_checkpoint_loads(model, tmp_path):
    checkpoint = _published_checkpoint(model)
    # The published file predates PyTorch's zip format: save it the legacy way too.
    torch.save(checkpoint, tmp_path / "resnext-101-kinetics.pth", _use_new_zipfile_serialization=False)
    extractor = build_extractor("resnext101", tmp_path / "resnext-101-kinetics.pth", seed=0)
    for name, tensor in extractor.trunk.state_dict().items():
        assert torch.equal(tensor, checkpoint["state_dict"][f"module.{name}"]), name


def test_wrong_or_unsafe_checkpoints_are_refused(model, tmp_path):
    checkpoint = _published_checkpoint(model)
    checkpoint["state_dict"]["module.layer2.0.conv2.weight"] = torch.zeros(256, 4, 3, 3, 3)
    torch.save(checkpoint, tmp_path / "wrong.pth")
    with pytest.raises(CheckpointError, match=r"layer2\.0\.conv2\.weight"):
        load_kinetics_weights(resnext101_3d(), tmp_path / "wrong.pth")
    # A pickle that would run code when loaded (create a file): weights_only refuses it, and nothing runs.
    target = tmp_path / "pwned"

    class RunsCode:
        def __reduce__(self):
            return open, (str(target), "w")

    (tmp_path / "evil_legacy.pth").write_bytes(pickle.dumps({"state_dict": RunsCode()}, protocol=2))
    torch.save({"state_dict": RunsCode()}, tmp_path / "evil_zip.pth")
    for name in ["evil_legacy.pth", "evil_zip.pth"]:
        with pytest.raises(WeightsError, match=f"{name}: refused"):
            build_extractor("resnext101", tmp_path / name, seed=0)
    assert not target.exists()
