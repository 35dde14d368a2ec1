"""Filters by name: image [B, 3, H, W] in [0, 1] -> image, on the generator's device.

One file per network, one line in `FILTERS` (a lazy dotted path, so torch-heavy or optional code is
imported only when a show asks for it). `superres` is the filter a show uses (weights from a file,
architecture read from them); the `superres-*` entries are the networks it can build, each able to
say from a state dict whether the weights are its own (`config_from_state_dict`).
"""

from __future__ import annotations

from engine.registry import Registry

FILTERS: dict[str, str] = {
    "superres": "engine.filters.superres:SuperRes",
    "deepdream": "engine.filters.deepdream:DeepDream",
    "style": "engine.filters.style:StyleTransfer",
    "cyclegan": "engine.filters.cyclegan:CycleGAN",
    "pix2pix": "engine.filters.pix2pix:Pix2Pix",
    "superres-compact": "engine.filters.sr_compact:SRVGGNetCompact",
    "superres-rrdb": "engine.filters.sr_rrdb:RRDBNet",
    "superres-srgan": "engine.filters.sr_srgan:Generator",
    "opencv-superres": "engine.filters.sr_opencv:OpenCVSuperRes",  # not superres-*: not a network load_sr builds
    "colour-transfer": "engine.filters.colour:ColourTransfer",
    "grade": "engine.filters.colour:Grade",
}


registry = Registry("filter", FILTERS)
names, get, create = registry.names, registry.get, registry.create


def stateful(module) -> bool:
    """Whether a built filter's frame depends on more than that frame and its controls: memory of earlier frames
    (feedback, stabilising) or the other frames of a batch. Each filter class says so in its `stateful` attribute;
    one that does not say counts as stateful. A show with a stateful filter is generated one frame at a time."""
    return bool(getattr(module, "stateful", True))
