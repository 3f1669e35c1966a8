"""The ResNet-18 baseline matches torchvision's resnet18 layout (1-channel stem)."""
import torch

from training.baselines import BasicBlock, resnet18


def test_layout_and_parameter_count_match_torchvision():
    model = resnet18(num_classes=1000, in_channels=3)
    # torchvision.models.resnet18(): 11,689,512 parameters
    assert sum(p.numel() for p in model.parameters()) == 11_689_512
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [2, 2, 2, 2]
    assert all(isinstance(b, BasicBlock) for i in range(1, 5) for b in getattr(model, f"layer{i}"))
    assert "layer2.0.downsample.0.weight" in model.state_dict() and "fc.bias" in model.state_dict()


def test_one_channel_stem_and_output_shape():
    model = resnet18(num_classes=3).eval()
    assert model.conv1.weight.shape == (64, 1, 7, 7)
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 3)
