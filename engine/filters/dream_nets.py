"""ImageNet classifiers to dream with, key-compatible with torchvision's weight files.

- GoogLeNet / Inception v1 (Szegedy et al. 2014, "Going Deeper with Convolutions", arXiv:1409.4842):
  the network of the original DeepDream. torchvision's `googlenet-*.pth` (ported from TensorFlow) holds
  `conv1.conv.weight`, `conv1.bn.*`, `inception3a.branch1.conv.weight`, ..., `fc.*`, and
  the auxiliary classifiers `aux1.*`, `aux2.*` (optional here). As in torchvision, the "5x5" branch
  uses a 3x3 convolution: the published weights have that shape.
- Inception v3 (Szegedy et al. 2015, "Rethinking the Inception Architecture", arXiv:1512.00567):
  `inception_v3_google-*.pth`, `Conv2d_1a_3x3.conv.weight`, `Mixed_5b.branch1x1.conv.weight`, ...,
  `AuxLogits.*` (optional), `fc.*`. Needs inputs of at least 75 x 75 pixels.

Both take images in [0, 1] and normalise them inside: ImageNet mean and std, then (`transform_input`,
on by default as for both published files) torchvision's re-scaling to the [-1, 1] range the
TensorFlow-trained weights expect. `features(image, layers)` returns the activations of named stages
(`layer_names`), stopping after the deepest one asked for: what `deepdream.dream` climbs.
Weight files are read with `torch.load(weights_only=True)` (or safetensors): nothing in them runs.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DreamNetError(ValueError):
    """A network file that cannot be dreamed with; the message names the file and what is wrong."""


class ConvBN(nn.Module):
    """conv (no bias) -> batch norm (eps 1e-3) -> ReLU; keys `conv.weight`, `bn.*`."""

    def __init__(self, c_in: int, c_out: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(c_out, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class ImageNetNet(nn.Module):
    """What both nets share: input normalisation, named stages, recognising their own weights."""

    layer_names: tuple[str, ...] = ()
    default_layers: tuple[str, ...] = ()
    min_side = 32  # smallest input side the dream's coarse octaves may use
    signature = ""  # a key only this network's state dicts have

    def __init__(self, transform_input: bool):
        super().__init__()
        self.transform_input = transform_input
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] -> what the first convolution expects."""
        x = (image - self.mean) / self.std  # torchvision's ImageNet normalisation
        if self.transform_input:  # torchvision's transform_input: back to (image - 0.5) / 0.5, in its arithmetic
            x = torch.cat([x[:, c:c + 1] * (s / 0.5) + (m - 0.5) / 0.5
                           for c, (m, s) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD))], 1)
        return x

    def features(self, image: torch.Tensor, layers) -> list[torch.Tensor]:
        """image [B, 3, H, W] in [0, 1] -> the activations of `layers` (names from `layer_names`), in
        the order asked; the stages after the deepest one are not run."""
        assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
        unknown = [n for n in layers if n not in self.layer_names]
        if unknown:
            raise ValueError(f"{type(self).__name__} has no layer {unknown[0]!r}; "
                             f"layers: {', '.join(self.layer_names)}")
        wanted, found = set(layers), {}
        x = self.prepare(image)
        for name in self.layer_names:
            x = getattr(self, name)(x)
            if name in wanted:
                found[name] = x
                if len(found) == len(wanted):
                    break
        return [found[n] for n in layers]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """The last stage's activations [B, C, h, w] -> class logits [B, num_classes] (eval: no dropout)."""
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] in [0, 1] -> ImageNet logits [B, num_classes]."""
        return self.logits(self.features(image, [self.layer_names[-1]])[0])

    @classmethod
    def config_from_state_dict(cls, state: dict[str, torch.Tensor]) -> dict | None:
        """Constructor arguments for these weights, or None when they are another network's."""
        if cls.signature not in state or "fc.weight" not in state:
            return None
        return dict(num_classes=int(state["fc.weight"].shape[0]), aux_logits=cls.aux_key in state)


# --- GoogLeNet ---------------------------------------------------------------------------------------

class InceptionV1Block(nn.Module):
    """Four branches concatenated: 1x1; 1x1 -> 3x3; 1x1 -> 3x3 (the "5x5"); 3x3 max pool -> 1x1."""

    def __init__(self, c_in: int, c1: int, c3_red: int, c3: int, c5_red: int, c5: int, pool_proj: int):
        super().__init__()
        self.branch1 = ConvBN(c_in, c1, 1)
        self.branch2 = nn.Sequential(ConvBN(c_in, c3_red, 1), ConvBN(c3_red, c3, 3, padding=1))
        self.branch3 = nn.Sequential(ConvBN(c_in, c5_red, 1), ConvBN(c5_red, c5, 3, padding=1))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), ConvBN(c_in, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class AuxV1(nn.Module):
    """GoogLeNet's auxiliary classifier (training only; here for its keys): pool to 4x4, 1x1 conv, 2 FCs."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.conv = ConvBN(c_in, 128, 1)
        self.fc1 = nn.Linear(2048, 1024)
        self.fc2 = nn.Linear(1024, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, 4)), 1)  # [B, 2048]
        return self.fc2(F.relu(self.fc1(x)))


class GoogLeNet(ImageNetNet):
    """Inception v1 as torchvision lays it out; image [B, 3, H, W] in [0, 1], H, W >= 15."""

    layer_names = ("conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a", "inception3b", "maxpool3",
                   "inception4a", "inception4b", "inception4c", "inception4d", "inception4e", "maxpool4",
                   "inception5a", "inception5b")
    default_layers = ("inception4c",)
    min_side = 32
    signature = "inception3a.branch1.conv.weight"
    aux_key = "aux1.fc2.weight"

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, transform_input: bool = True):
        super().__init__(transform_input)
        self.config = dict(num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input)
        self.conv1 = ConvBN(3, 64, 7, 2, 3)  # [B, 64, H/2, W/2]
        self.maxpool1 = nn.MaxPool2d(3, 2, ceil_mode=True)  # H/4
        self.conv2 = ConvBN(64, 64, 1)
        self.conv3 = ConvBN(64, 192, 3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, 2, ceil_mode=True)  # H/8
        self.inception3a = InceptionV1Block(192, 64, 96, 128, 16, 32, 32)  # 256 channels
        self.inception3b = InceptionV1Block(256, 128, 128, 192, 32, 96, 64)  # 480
        self.maxpool3 = nn.MaxPool2d(3, 2, ceil_mode=True)  # H/16
        self.inception4a = InceptionV1Block(480, 192, 96, 208, 16, 48, 64)  # 512
        self.inception4b = InceptionV1Block(512, 160, 112, 224, 24, 64, 64)  # 512
        self.inception4c = InceptionV1Block(512, 128, 128, 256, 24, 64, 64)  # 512
        self.inception4d = InceptionV1Block(512, 112, 144, 288, 32, 64, 64)  # 528
        self.inception4e = InceptionV1Block(528, 256, 160, 320, 32, 128, 128)  # 832
        self.maxpool4 = nn.MaxPool2d(2, 2, ceil_mode=True)  # H/32
        self.inception5a = InceptionV1Block(832, 256, 160, 320, 32, 128, 128)  # 832
        self.inception5b = InceptionV1Block(832, 384, 192, 384, 48, 128, 128)  # 1024
        if aux_logits:
            self.aux1 = AuxV1(512, num_classes)  # reads inception4a
            self.aux2 = AuxV1(528, num_classes)  # reads inception4d
        self.fc = nn.Linear(1024, num_classes)


# --- Inception v3 ------------------------------------------------------------------------------------

class MixedA(nn.Module):
    """35x35 block: 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg pool -> 1x1."""

    def __init__(self, c_in: int, pool_features: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 64, 1)
        self.branch5x5_1 = ConvBN(c_in, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(c_in, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b5 = self.branch5x5_2(self.branch5x5_1(x))
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.branch1x1(x), b5, b3, pool], 1)


class MixedB(nn.Module):
    """35 -> 17 reduction: strided 3x3 | 1x1 -> 3x3 -> strided 3x3 | max pool."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3 = ConvBN(c_in, 384, 3, 2)
        self.branch3x3dbl_1 = ConvBN(c_in, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), b3, F.max_pool2d(x, 3, 2)], 1)


class MixedC(nn.Module):
    """17x17 block with factorised 7x7 convolutions (1x7 and 7x1)."""

    def __init__(self, c_in: int, channels_7x7: int):
        super().__init__()
        c7, row, col = channels_7x7, dict(kernel=(1, 7), padding=(0, 3)), dict(kernel=(7, 1), padding=(3, 0))
        self.branch1x1 = ConvBN(c_in, 192, 1)
        self.branch7x7_1 = ConvBN(c_in, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, **row)
        self.branch7x7_3 = ConvBN(c7, 192, **col)
        self.branch7x7dbl_1 = ConvBN(c_in, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_3 = ConvBN(c7, c7, **row)
        self.branch7x7dbl_4 = ConvBN(c7, c7, **col)
        self.branch7x7dbl_5 = ConvBN(c7, 192, **row)
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        d = x
        for i in range(1, 6):
            d = getattr(self, f"branch7x7dbl_{i}")(d)
        pool = self.branch_pool(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.branch1x1(x), b7, d, pool], 1)


class MixedD(nn.Module):
    """17 -> 8 reduction: 1x1 -> strided 3x3 | 1x1 -> 1x7 -> 7x1 -> strided 3x3 | max pool."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch3x3_1 = ConvBN(c_in, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, 2)
        self.branch7x7x3_1 = ConvBN(c_in, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_2(self.branch3x3_1(x))
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([b3, b7, F.max_pool2d(x, 3, 2)], 1)


class MixedE(nn.Module):
    """8x8 block whose 3x3 branches split into parallel 1x3 and 3x1 outputs."""

    def __init__(self, c_in: int):
        super().__init__()
        self.branch1x1 = ConvBN(c_in, 320, 1)
        self.branch3x3_1 = ConvBN(c_in, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(c_in, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(c_in, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.branch3x3_1(x)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pool = self.branch_pool(F.avg_pool2d(x, 3, 1, 1))
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(s), self.branch3x3_2b(s),
                          self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d), pool], 1)


class AuxV3(nn.Module):
    """Inception v3's auxiliary classifier (training only; here for its keys)."""

    def __init__(self, c_in: int, num_classes: int):
        super().__init__()
        self.conv0 = ConvBN(c_in, 128, 1)
        self.conv1 = ConvBN(128, 768, 5)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, 5, 3)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class InceptionV3(ImageNetNet):
    """Inception v3 as torchvision lays it out; image [B, 3, H, W] in [0, 1], H, W >= 75."""

    layer_names = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
                   "maxpool2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                   "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")
    default_layers = ("Mixed_6b",)
    min_side = 75
    signature = "Mixed_5b.branch1x1.conv.weight"
    aux_key = "AuxLogits.fc.weight"

    def __init__(self, num_classes: int = 1000, aux_logits: bool = False, transform_input: bool = True):
        super().__init__(transform_input)
        self.config = dict(num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input)
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, 2)  # 299 -> 149
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)  # 147
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, 2)  # 73
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)  # 71
        self.maxpool2 = nn.MaxPool2d(3, 2)  # 35
        self.Mixed_5b = MixedA(192, 32)  # 256 channels
        self.Mixed_5c = MixedA(256, 64)  # 288
        self.Mixed_5d = MixedA(288, 64)  # 288
        self.Mixed_6a = MixedB(288)  # 768, 17x17
        self.Mixed_6b = MixedC(768, 128)
        self.Mixed_6c = MixedC(768, 160)
        self.Mixed_6d = MixedC(768, 160)
        self.Mixed_6e = MixedC(768, 192)
        if aux_logits:
            self.AuxLogits = AuxV3(768, num_classes)  # reads Mixed_6e
        self.Mixed_7a = MixedD(768)  # 1280, 8x8
        self.Mixed_7b = MixedE(1280)  # 2048
        self.Mixed_7c = MixedE(2048)
        self.fc = nn.Linear(2048, num_classes)


NETWORKS: dict[str, type[ImageNetNet]] = {"googlenet": GoogLeNet, "inception_v3": InceptionV3}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.pth` / `.safetensors` file (nothing in it runs); errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise DreamNetError(f"{path}: no such network file")
    try:
        state = load_file(str(path)) if path.suffix == ".safetensors" else \
            torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DreamNetError(f"{path}: not a plain PyTorch weights file, refused or corrupt ({first})") from None
    except (RuntimeError, EOFError, OSError, SafetensorError) as e:
        reason = str(e).split(". ")[0] or type(e).__name__
        raise DreamNetError(f"{path}: not a readable PyTorch weights file, truncated or corrupt ({reason})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DreamNetError(f"{path}: holds {type(state).__name__}, not a state dict of tensors")
    return state


def detect(state: dict[str, torch.Tensor]) -> tuple[str, dict] | None:
    """(network name in `NETWORKS`, constructor arguments) for the network these weights are for."""
    for name, cls in NETWORKS.items():
        config = cls.config_from_state_dict(state)
        if config is not None:
            return name, config
    return None


def load(path: str | Path, network: str | None = None, transform_input: bool = True) -> tuple[ImageNetNet, str]:
    """(network in eval mode, frozen, on the CPU; its name) from a torchvision-format weights file,
    loaded strictly. `network` ("googlenet" or "inception_v3") is a check: another net is an error."""
    path = Path(path)
    state = read_state_dict(path)
    found = detect(state)
    wanted = network or " or ".join(NETWORKS)
    if found is None:
        sample = ", ".join(list(state)[:3]) or "none"
        raise DreamNetError(f"{path}: holds no network DeepDream knows (keys {sample}, ...), not {wanted}")
    name, config = found
    if network is not None and name != network:
        raise DreamNetError(f"{path}: holds {name}, not {network} as asked")
    net = NETWORKS[name](**config, transform_input=transform_input)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        detail = " ".join(str(e).split())[:300]
        raise DreamNetError(f"{path}: looks like {name} but its tensors do not fit ({detail})") from None
    return net.eval().requires_grad_(False), name
