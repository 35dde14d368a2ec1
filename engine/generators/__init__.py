"""Model architectures by name; the model file format is in `checkpoint.py`.

A backend is one file plus one line in `ARCHITECTURES` (a lazy dotted path, so a heavy backend is
imported only when a checkpoint asks for it). Call sites never branch on the architecture: the
checkpoint's own metadata names it, and `create` builds it.
"""

from __future__ import annotations

from engine.registry import Registry

ARCHITECTURES: dict[str, str] = {
    "dcgan": "engine.generators.dcgan:Generator",
    "dcgan-discriminator": "engine.generators.dcgan:Discriminator",
    "stylegan2": "engine.generators.stylegan2:Generator",
    "tconv-stack": "engine.generators.tconv_stack:Generator",
    "stylegan3": "engine.generators.stylegan3:Generator",
    "biggan": "engine.generators.biggan:Generator",
    "lightweight-gan": "engine.generators.lightweight_gan:Generator",
    "lucidrains-stylegan2": "engine.generators.lucidrains_stylegan2:Generator",
}


registry = Registry("architecture", ARCHITECTURES)
names, create = registry.names, registry.create
