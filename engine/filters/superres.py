"""Super-resolution as a filter: read someone's published weights, recognise the network, upscale.

Networks (one file each): Real-ESRGAN's compact net (arXiv:2107.10833, `sr_compact`), ESRGAN's
RRDBNet (arXiv:1809.00219, `sr_rrdb`), the SRGAN generator (arXiv:1609.04802, `sr_srgan`).
Weight files are `.pth` read with `torch.load(weights_only=True)`, which rebuilds tensors and plain
containers and runs nothing from the file; Real-ESRGAN's `{'params_ema': ...}` / `{'params': ...}`
wrappers are unwrapped (EMA first, as Real-ESRGAN's own inference does). A `.safetensors` file of the
same keys works too. The file does not name its architecture, so the keys and shapes decide.

`upscale` is the pure function; `SuperRes` is the thin module the loop holds.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from engine import filters
from engine.filters.sr_rrdb import rename_esrgan_keys


class SuperResError(ValueError):
    """A weights file that cannot be used; the message names the file and what is wrong."""


@dataclass
class SRInfo:
    path: Path
    architecture: str  # a `superres-*` name in `engine.filters.FILTERS`
    scale: int
    config: dict  # the network's constructor arguments
    parameters: int = 0


def networks() -> list[str]:
    return filters.names("superres-*")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a `.pth` / `.safetensors` file, unwrapped from Real-ESRGAN's `params` dicts."""
    path = Path(path)
    if not path.is_file():
        raise SuperResError(f"{path}: no such weights file")
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        needs_code = [line.strip() for line in str(e).splitlines() if "Unsupported global" in line]
        if needs_code:
            raise SuperResError(f"{path}: refused, loading it would run code from the file "
                                f"({needs_code[0]}); only plain tensors are read") from None
        raise SuperResError(f"{path}: not a readable PyTorch weights file, truncated or corrupt ({e})") from None
    except (RuntimeError, EOFError, OSError, SafetensorError) as e:
        reason = str(e).split(". ")[0] or type(e).__name__
        raise SuperResError(f"{path}: not a readable PyTorch weights file, truncated or corrupt ({reason})") from None
    if isinstance(state, dict):
        for wrapper in ("params_ema", "params"):
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SuperResError(f"{path}: holds {type(state).__name__}, not a state dict of tensors")
    if any(k.startswith("RRDB_trunk.") for k in state):
        state = rename_esrgan_keys(state)
    return state


def detect(state: dict[str, torch.Tensor]) -> tuple[str, dict] | None:
    """(network name, constructor arguments) for the first network that claims these weights."""
    for name in networks():
        config = filters.get(name).config_from_state_dict(state)
        if config is not None:
            return name, config
    return None


def load_sr(path: str | Path, architecture: str | None = None,
            activation: str | None = None) -> tuple[nn.Module, SRInfo]:
    """Build the network a weights file holds and load it strictly, in eval mode on the CPU.

    `architecture` (a `superres-*` name) is a check: a file holding another network is an error.
    `activation` is needed only for compact nets without PReLU weights (ReLU and LeakyReLU leave no
    trace in a state dict)."""
    path = Path(path)
    if architecture is not None and architecture not in networks():
        raise ValueError(f"unknown super-resolution network {architecture!r}; known: {', '.join(networks())}")
    state = read_state_dict(path)
    found = detect(state)
    if found is None:
        sample = ", ".join(list(state)[:3])
        holds = f"no super-resolution network Masquerade knows (keys {sample}, ...)"
        wanted = architecture or " or ".join(networks())
        raise SuperResError(f"{path}: holds {holds}, not {wanted}")
    name, config = found
    if architecture is not None and architecture != name:
        raise SuperResError(f"{path}: holds {name} (x{config['scale']}), not {architecture} as asked")
    if "activation" in config:
        if config["activation"] is None and activation is None:
            raise SuperResError(f"{path}: a {name} net without PReLU weights; ReLU and LeakyReLU cannot be "
                                "told apart from the file, so pass activation='relu' or 'leakyrelu'")
        if activation is not None and config["activation"] not in (None, activation):
            raise SuperResError(f"{path}: its weights are for activation {config['activation']!r}, "
                                f"not {activation!r} as asked")
        config["activation"] = config["activation"] or activation
    module = filters.create(name, **config)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise SuperResError(f"{path}: looks like {name} {config} but its tensors do not fit ({e})") from None
    module.eval().requires_grad_(False)
    parameters = sum(p.numel() for p in module.parameters())
    return module, SRInfo(path, name, config["scale"], config, parameters)


def _tiled(x: torch.Tensor, model: nn.Module, tile: int, overlap: int, multiple: int) -> torch.Tensor:
    """Run `model` on tile x tile pieces, each read with `overlap` extra input pixels on every side
    (clipped at the frame's edge), and keep only each piece's centre: memory stays bounded by the tile
    size, and the result equals one whole-frame pass once `overlap` covers the receptive field."""
    _, _, h, w = x.shape
    s = model.scale
    tile = max(multiple, tile - tile % multiple)
    overlap += -overlap % multiple  # windows must split into whole pixel-unshuffle cells
    out = None
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            ya, xa = max(y0 - overlap, 0), max(x0 - overlap, 0)
            piece = model(x[..., ya:min(y1 + overlap, h), xa:min(x1 + overlap, w)])  # [B, C, s*th, s*tw]
            if out is None:
                out = piece.new_empty(*piece.shape[:2], h * s, w * s)
            out[..., y0 * s:y1 * s, x0 * s:x1 * s] = \
                piece[..., (y0 - ya) * s:(y1 - ya) * s, (x0 - xa) * s:(x1 - xa) * s]
    return out


@torch.inference_mode()
def upscale(image: torch.Tensor, model: nn.Module, tile: int | None = None, overlap: int = 16) -> torch.Tensor:
    """image [B, 3, H, W] in [0, 1] -> [B, 3, s*H, s*W] in [0, 1] (clamped), s = `model.scale`.

    `tile` (input pixels) bounds memory on large frames; `overlap` is the context each tile reads
    beyond its edges, and should cover the network's receptive field (`model.receptive_radius` where
    it has one) for seamless output. On CUDA the network runs under fp16 autocast."""
    assert image.ndim == 4 and image.shape[1] == 3, f"image must be [B, 3, H, W], got {list(image.shape)}"
    s, multiple = model.scale, getattr(model, "input_multiple", 1)
    h, w = image.shape[-2:]
    x = image
    if h % multiple or w % multiple:  # RRDB x2 / x1 unshuffle the input: pad to whole cells, crop after
        x = F.pad(image, (0, -w % multiple, 0, -h % multiple), mode="replicate")
    with torch.autocast("cuda", dtype=torch.float16, enabled=x.is_cuda):
        if tile is None or tile >= max(x.shape[-2:]):
            out = model(x)
        else:
            out = _tiled(x, model, tile, overlap, multiple)
    return out[..., :h * s, :w * s].float().clamp(0, 1)


SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "models" / "sr-emoji-x4.safetensors"


class SuperRes(nn.Module):
    """The filter the loop holds: weights read once from a file, then `upscale` on every frame.
    Without a `path`, the project's own x4 model (`assets/models/sr-emoji-x4.md`)."""

    stateful = False  # a convolution network, frame by frame (batched: within 1/255 of one by one, docs/performance.md)

    def __init__(self, path: str | Path = SHIPPED, tile: int | None = None, overlap: int = 16,
                 architecture: str | None = None, activation: str | None = None):
        super().__init__()
        self.net, self.info = load_sr(path, architecture, activation)
        self.scale, self.tile, self.overlap = self.info.scale, tile, overlap
        self.config = dict(path=str(path), tile=tile, overlap=overlap, architecture=self.info.architecture,
                           activation=self.info.config.get("activation"))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return upscale(image, self.net, self.tile, self.overlap)
