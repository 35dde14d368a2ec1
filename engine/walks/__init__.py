"""Latent walks as schedulers: `step(tick) -> z [1, z_dim]`, a pure function of show time.

The same walk object serves the live window, offline renders and tests; it holds no GUI and reads
no clock. One file per walk, one line in `WALKS`.
"""

from __future__ import annotations

from engine.registry import Registry

WALKS: dict[str, str] = {
    "keyframes": "engine.walks.keyframes:KeyframeLoop",
    "noise_loop": "engine.walks.noise_loop:NoiseLoop",
    "drift": "engine.walks.drift:Drift",
    "beats": "engine.walks.beats:BeatKeyframes",
}


registry = Registry("walk", WALKS)
names, create = registry.names, registry.create
