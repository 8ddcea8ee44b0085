"""Reference vision and audio models, written from their published architectures (no torchvision, no download).

    bridge convert examples/vision.py:resnet50 --input 1x3x224x224
    bridge convert examples/vision.py:mobilenet_v3_small --input 1x3x224x224 --channels-last-io

Each factory returns an eval-mode model with seeded random weights and randomized BatchNorm statistics
(running mean/var, so that parity tests exercise the folded normalization, not an identity). Load your
trained weights with ``--weights`` (a state_dict of the same model). The tests convert each of them from the
CLI and assert their errors and the Transpose count of their tfjs graph (tests/test_reference_models.py);
scripts/bench_reference.py prints their conversion cost.

- resnet50: torchvision's ResNet-50 layout (Bottleneck blocks 3-4-6-3, stride on the 3x3 conv).
- resnet18: torchvision's ResNet-18 layout (BasicBlock 2-2-2-2); not in REFERENCE, tests/test_codegen_classes.py
  uses it for the shape of the generated source.
- mobilenet_v2: inverted residuals with ReLU6 and depthwise 3x3 convs (width 1.0).
- mobilenet_v3_small: hardswish, squeeze-excite with hardsigmoid, 5x5 depthwise convs.
- efficientnet_b0: MBConv with SiLU and squeeze-excite, stage table of the paper (stochastic depth is
  inference-free).
- unet: a 4-level U-Net with skip concats; two up-steps are transposed convs, two are bilinear upsampling.
- convnext: a ConvNeXt-T-style stack (depthwise 7x7, LayerNorm over channels, GELU, layer scale), reduced depth.
- vit: a small ViT (16x16 patch embedding, class token, learned positions, pre-norm encoder blocks).
- audio_cnn: a 1-D CNN over raw waveform (strided stem, Conv1d/BatchNorm1d/ReLU/MaxPool1d, global pooling).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

SEED = 0


def randomized(model: nn.Module, seed: int = SEED) -> nn.Module:
    """Seeded weights, and BatchNorm running statistics and affine terms drawn at random; eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            fan_in = p[0].numel() if p.dim() > 1 else p.numel()
            p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(max(fan_in, 1)))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) * 0.5 + 0.75)
                if m.affine:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            if isinstance(m, LayerScale):
                m.gamma.copy_(torch.rand(m.gamma.shape, generator=g) * 0.5 + 0.25)
    return model.eval()


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: type | None = nn.ReLU) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act()) if act else nn.Sequential(*layers)


# ---- ResNet-50 ---------------------------------------------------------------------------------------------


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                           if stride != 1 or cin != cout else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.downsample = (nn.Sequential(nn.Conv2d(cin, width, 1, stride, bias=False), nn.BatchNorm2d(width))
                           if stride != 1 or cin != width else None)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), num_classes: int = 1000, block: type = None):
        super().__init__()
        block = block or Bottleneck
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin, stages = 64, []
        for i, n in enumerate(layers):
            width = 64 * 2 ** i
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1))
                cin = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000) -> nn.Module:
    return randomized(ResNet((3, 4, 6, 3), num_classes))


def resnet18(num_classes: int = 1000) -> nn.Module:
    return randomized(ResNet((2, 2, 2, 2), num_classes, BasicBlock))


# ---- MobileNetV2 -------------------------------------------------------------------------------------------


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=nn.ReLU6)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6), conv_bn(hidden, cout, 1, act=None)]
        self.conv = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(nn.Module):
    SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1))  # (expand t, channels c, repeats n, stride s), Sandler et al. table 2

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)], 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn(cin, 1280, 1, act=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = F.adaptive_avg_pool2d(self.features(x), (1, 1))
        return self.classifier(torch.flatten(x, 1))


def mobilenet_v2(num_classes: int = 1000) -> nn.Module:
    return randomized(MobileNetV2(num_classes))


# ---- MobileNetV3 (small) and EfficientNet-B0 share squeeze-excite ----------------------------------------------


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeezed: int, act: type = nn.ReLU, gate: type = nn.Hardsigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)
        self.act = act()
        self.gate = gate()

    def forward(self, x):
        return x * self.gate(self.fc2(self.act(self.fc1(self.avgpool(x)))))


def _divisible(v: float, divisor: int = 8) -> int:
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


class V3Block(nn.Module):
    def __init__(self, cin: int, k: int, hidden: int, cout: int, se: bool, act: type, stride: int):
        super().__init__()
        layers = [conv_bn(cin, hidden, 1, act=act)] if hidden != cin else []
        layers.append(conv_bn(hidden, hidden, k, stride, groups=hidden, act=act))
        if se:
            layers.append(SqueezeExcite(hidden, _divisible(hidden // 4)))
        layers.append(conv_bn(hidden, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        out = self.block(x)
        return out + x if self.use_res else out


class MobileNetV3Small(nn.Module):
    # (kernel, expanded, out, squeeze-excite, activation, stride), Howard et al. table 2
    SETTINGS = ((3, 16, 16, True, nn.ReLU, 2), (3, 72, 24, False, nn.ReLU, 2), (3, 88, 24, False, nn.ReLU, 1),
                (5, 96, 40, True, nn.Hardswish, 2), (5, 240, 40, True, nn.Hardswish, 1),
                (5, 240, 40, True, nn.Hardswish, 1), (5, 120, 48, True, nn.Hardswish, 1),
                (5, 144, 48, True, nn.Hardswish, 1), (5, 288, 96, True, nn.Hardswish, 2),
                (5, 576, 96, True, nn.Hardswish, 1), (5, 576, 96, True, nn.Hardswish, 1))

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [conv_bn(3, 16, 3, 2, act=nn.Hardswish)], 16
        for k, hidden, cout, se, act, s in self.SETTINGS:
            layers.append(V3Block(cin, k, hidden, cout, se, act, s))
            cin = cout
        layers.append(conv_bn(cin, 576, 1, act=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(1024, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v3_small(num_classes: int = 1000) -> nn.Module:
    return randomized(MobileNetV3Small(num_classes))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1, act=nn.SiLU)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, k, stride, groups=hidden, act=nn.SiLU),
                   SqueezeExcite(hidden, max(1, cin // 4), act=nn.SiLU, gate=nn.Sigmoid),
                   conv_bn(hidden, cout, 1, act=None)]
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        out = self.block(x)
        return out + x if self.use_res else out  # stochastic depth is the identity at inference


class EfficientNetB0(nn.Module):
    # (expand, kernel, stride, out, repeats), Tan & Le table 1
    STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
              (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers, cin = [conv_bn(3, 32, 3, 2, act=nn.SiLU)], 32
        for e, k, s, c, n in self.STAGES:
            for i in range(n):
                layers.append(MBConv(cin, c, k, s if i == 0 else 1, e))
                cin = c
        layers.append(conv_bn(cin, 1280, 1, act=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def efficientnet_b0(num_classes: int = 1000) -> nn.Module:
    return randomized(EfficientNetB0(num_classes))


# ---- U-Net -------------------------------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(conv_bn(cin, cout, 3), conv_bn(cout, cout, 3))


class Up(nn.Module):
    def __init__(self, cin: int, cout: int, bilinear: bool):
        super().__init__()
        if bilinear:
            self.up = nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False),
                                    nn.Conv2d(cin, cin // 2, 1))
        else:
            self.up = nn.ConvTranspose2d(cin, cin // 2, 2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x, skip):
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    def __init__(self, channels: int = 3, classes: int = 2, base: int = 16):
        super().__init__()
        c = [base * 2 ** i for i in range(5)]
        self.inc = DoubleConv(channels, c[0])
        self.downs = nn.ModuleList(nn.Sequential(nn.MaxPool2d(2), DoubleConv(c[i], c[i + 1])) for i in range(4))
        self.ups = nn.ModuleList(Up(c[4 - i], c[3 - i], bilinear=i % 2 == 1) for i in range(4))
        self.outc = nn.Conv2d(c[0], classes, 1)

    def forward(self, x):
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        x = skips.pop()
        for up in self.ups:
            x = up(x, skips.pop())
        return self.outc(x)


def unet(classes: int = 2) -> nn.Module:
    return randomized(UNet(classes=classes))


# ---- ConvNeXt ----------------------------------------------------------------------------------------------


class LayerScale(nn.Module):
    def __init__(self, dim: int, init: float = 1e-6):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x):
        return x * self.gamma


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map, as ConvNeXt writes it (permute, normalize, permute back)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.scale = LayerScale(dim)

    def forward(self, x):
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.scale(self.pwconv2(self.act(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    def __init__(self, depths=(2, 2, 4, 2), dims=(48, 96, 192, 384), num_classes: int = 1000):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        self.stages = nn.ModuleList()
        for i, (depth, dim) in enumerate(zip(depths, dims)):
            down = [] if i == 0 else [LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], dim, 2, 2)]
            self.stages.append(nn.Sequential(*down, *(ConvNeXtBlock(dim) for _ in range(depth))))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.head(self.norm(x.mean(dim=(-2, -1))))


def convnext(num_classes: int = 1000) -> nn.Module:
    return randomized(ConvNeXt(num_classes=num_classes))


# ---- ViT ---------------------------------------------------------------------------------------------------


class ViT(nn.Module):
    def __init__(self, image: int = 64, patch: int = 16, dim: int = 96, depth: int = 4, heads: int = 4,
                 num_classes: int = 10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, dim, patch, patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (image // patch) ** 2 + 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        return self.head(self.norm(self.encoder(x))[:, 0])


def vit(num_classes: int = 10) -> nn.Module:
    return randomized(ViT(num_classes=num_classes))


# ---- 1-D audio CNN -----------------------------------------------------------------------------------------


class AudioCNN(nn.Module):
    """A waveform classifier: strided stem, Conv1d/BatchNorm1d/ReLU/MaxPool1d stages, global average pooling."""

    def __init__(self, classes: int = 35, width: int = 32):
        super().__init__()
        layers, cin = [nn.Conv1d(1, width, 80, stride=16), nn.BatchNorm1d(width), nn.ReLU(), nn.MaxPool1d(4)], width
        for cout in (width, 2 * width, 2 * width):
            layers += [nn.Conv1d(cin, cout, 3, padding=1), nn.BatchNorm1d(cout), nn.ReLU(), nn.MaxPool1d(4)]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        return self.fc(F.adaptive_avg_pool1d(self.features(x), 1).flatten(1))


def audio_cnn(classes: int = 35) -> nn.Module:
    return randomized(AudioCNN(classes))


#: factory name -> (torch input shape used by tests and benchmarks)
REFERENCE = {
    "resnet50": (1, 3, 224, 224),
    "mobilenet_v2": (1, 3, 224, 224),
    "mobilenet_v3_small": (1, 3, 224, 224),
    "efficientnet_b0": (1, 3, 224, 224),
    "unet": (1, 3, 64, 64),
    "convnext": (1, 3, 128, 128),
    "vit": (1, 3, 64, 64),
    "audio_cnn": (1, 1, 8000),
}
