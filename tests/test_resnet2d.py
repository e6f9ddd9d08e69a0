"""Our ResNet-101 (preprocess/resnet2d.py) against torchvision's, the network HCRN/DualVGR extracted with: the same
parameter names and random initialisation under a seed, the same outputs; and BatchNorm folding
(preprocess/backbones/base.py fold_batchnorm) against the BatchNorm equation computed by hand."""
import copy

import pytest
import torch
import torchvision
from torch import nn
from torch.nn import functional as F

from preprocess.backbones import fold_batchnorm, get_backbone
from preprocess.resnet2d import resnet101


def test_resnet101_draws_torchvisions_weights_and_computes_its_outputs():
    torch.manual_seed(5)
    ours = resnet101()
    after_ours = torch.rand(4)
    torch.manual_seed(5)
    theirs = torchvision.models.resnet101(weights=None)
    after_theirs = torch.rand(4)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(reference)                  # names and order: torchvision's files load unchanged
    for name, tensor in reference.items():
        assert torch.equal(mine[name], tensor), name
    assert torch.equal(after_ours, after_theirs)          # the generator is left where torchvision leaves it
    assert sum(p.numel() for p in ours.parameters()) == 44_549_160
    x = torch.randn(2, 3, 64, 48)
    with torch.no_grad():
        for mode in ("train", "eval"):
            getattr(ours, mode)(), getattr(theirs, mode)()
            assert torch.equal(ours(x), theirs(x)), mode


def test_the_backbone_no_longer_imports_torchvision():
    import subprocess
    import sys
    code = ("import sys; from preprocess.backbones import get_backbone; get_backbone('resnet101').build_network("
            "(32, 32)); print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


class ConvNorm(nn.Module):
    def __init__(self, conv: nn.Module, norm: nn.Module, reuse: bool = False):
        super().__init__()
        self.conv, self.norm, self.reuse = conv, norm, reuse

    def forward(self, x):
        y = self.conv(x)
        return self.norm(y) + y if self.reuse else self.norm(y)


def random_norm(channels: int, affine: bool = True) -> nn.BatchNorm2d:
    norm = nn.BatchNorm2d(channels, eps=1e-3, affine=affine)
    norm.running_mean.uniform_(-2, 2)
    norm.running_var.uniform_(0.1, 3)
    if affine:
        norm.weight.data.uniform_(-2, 2)
        norm.bias.data.uniform_(-1, 1)
    return norm.eval()


@pytest.mark.parametrize("affine,bias", [(True, False), (True, True), (False, True)])
def test_folded_convolution_equals_the_batchnorm_equation(affine, bias):
    torch.manual_seed(0)
    conv, norm = nn.Conv2d(3, 5, 3, padding=1, bias=bias), random_norm(5, affine)
    x = torch.randn(2, 3, 6, 7)
    z = F.conv2d(x, conv.weight, conv.bias, padding=1)            # W x + b
    mu, var = norm.running_mean.view(1, -1, 1, 1), norm.running_var.view(1, -1, 1, 1)
    expected = (z - mu) / torch.sqrt(var + 1e-3)
    if affine:
        expected = expected * norm.weight.view(1, -1, 1, 1) + norm.bias.view(1, -1, 1, 1)
    folded = fold_batchnorm(ConvNorm(conv, norm).eval())
    assert isinstance(folded.norm, nn.Identity) and folded.conv.bias is not None
    with torch.no_grad():
        torch.testing.assert_close(folded(x), expected, rtol=1e-5, atol=1e-5)


def test_a_convolution_read_twice_and_an_untraceable_network_are_left_alone():
    torch.manual_seed(0)
    shared = fold_batchnorm(ConvNorm(nn.Conv2d(3, 4, 1), random_norm(4), reuse=True).eval())
    assert isinstance(shared.norm, nn.BatchNorm2d)

    class Branchy(ConvNorm):
        def forward(self, x):
            return self.norm(self.conv(x)) if x.shape[0] > 1 else x
    branchy = fold_batchnorm(Branchy(nn.Conv2d(3, 4, 1), random_norm(4)).eval())
    assert isinstance(branchy.norm, nn.BatchNorm2d)


@pytest.mark.parametrize("name,shape", [("resnet101", (3, 40, 40, 3)), ("resnext101", (2, 4, 32, 32, 3))])
def test_folded_backbones_give_the_same_features(name, shape):
    """The paper's backbones with BatchNorm statistics that are not the identity (as after training)."""
    backbone = get_backbone(name)
    plain = backbone.build_extractor(None, seed=1, size=shape[-3:-1])
    generator = torch.Generator().manual_seed(2)
    for module in plain.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.rand(module.num_features, generator=generator) - 0.5)
            module.running_var.copy_(torch.rand(module.num_features, generator=generator) + 0.5)
    folded = copy.deepcopy(plain)
    folded.trunk = fold_batchnorm(folded.trunk)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in folded.modules())
    frames = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    with torch.no_grad():
        expected, got = plain(frames), folded(frames)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
