"""Contracts over the registries: every architecture, walk and sink is checked the same way, so a new
backend is tested the moment it is registered (a name without an entry here fails)."""

import json

import numpy as np
import pytest
import torch

from engine import generators, sinks, walks
from engine.frame import Tick
from engine.generators import checkpoint

TINY = {  # the smallest config of each architecture that still exercises every layer type
    "dcgan": {"z_dim": 8, "resolution": 16, "base_channels": 4},
    "dcgan-discriminator": {"resolution": 16, "base_channels": 4},
    "stylegan2": {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3,
                  "mapping_kwargs": {"num_layers": 2}, "synthesis_kwargs": {"channel_base": 64, "channel_max": 16}},
    "stylegan3": {"z_dim": 8, "c_dim": 0, "w_dim": 8, "img_resolution": 16, "img_channels": 3,
                  "channel_base": 64, "channel_max": 8, "num_layers": 3},
    "tconv-stack": {"z_dim": 8, "layers": [{"in": 8, "out": 4, "kernel": 4, "bias": False, "norm": "batch"},
                                           {"in": 4, "out": 1, "kernel": 4, "stride": 2, "padding": 1,
                                            "activation": "tanh"}]},
    "biggan": {"output_dim": 32, "z_dim": 8, "class_embed_dim": 8, "channel_width": 4, "num_classes": 4,
               "layers": [[True, 16, 8], [True, 8, 4], [False, 4, 2], [True, 2, 1]], "attention_layer_position": 1,
               "n_stats": 3},
    "lightweight-gan": {"latent_dim": 16, "image_size": 64, "channels": [16, 8, 8, 4], "attn_res_layers": [8]},
    "lucidrains-stylegan2": {"image_size": 32, "latent_dim": 8, "style_depth": 2, "network_capacity": 2,
                             "fmap_max": 16, "attn_layers": [1]},
}
DISCRIMINATORS = {"dcgan-discriminator"}


def test_every_architecture_has_a_contract():
    assert sorted(TINY) == generators.names()


@pytest.mark.parametrize("name", sorted(set(TINY) - DISCRIMINATORS))
def test_generator_contract(name, tmp_path):
    torch.manual_seed(0)
    g = generators.create(name, **TINY[name]).eval()
    assert json.loads(json.dumps(g.config)) == g.config  # the config is the constructor's JSON
    z = torch.randn(2, g.z_dim)
    style = {"truncation_psi": 0.7}
    if getattr(g, "c_dim", 0):  # a class-conditional model takes one class per sample
        style["c"] = torch.eye(g.c_dim)[:2]
    with torch.no_grad():
        image = g(z, **style)
    assert image.shape == (2, 3, g.resolution, g.resolution)
    assert image.min() >= 0 and image.max() <= 1
    path = tmp_path / f"{name}.safetensors"
    checkpoint.save(g, name, path, {"test": True})
    loaded, card = checkpoint.load(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, **style), image)
    assert card.architecture == name


@pytest.mark.parametrize("name", sorted(DISCRIMINATORS))
def test_discriminator_contract(name):
    d = generators.create(name, **TINY[name]).eval()
    res = TINY[name]["resolution"]
    assert d(torch.rand(3, 3, res, res)).shape == (3,)


@pytest.mark.parametrize("name", walks.names())
def test_walk_is_a_pure_function_of_show_time(name):
    a, b = walks.create(name, z_dim=16, seed=4), walks.create(name, z_dim=16, seed=4)
    for t in (0.0, 0.5, 3.25, 100.0):
        z = a.step(Tick(0, t))
        assert z.shape == (1, 16)
        assert torch.equal(z, b.step(Tick(99, t)))  # same time, same latent, whatever the frame index


def _sink_rows(tmp_path):
    """Each sink's row for the contract, and how to read back what it wrote (None: it keeps nothing)."""
    from PIL import Image

    from engine.sinks.video import read_frames

    raw = tmp_path / "raw.rgb"

    def raw_frames():
        data = np.frombuffer(raw.read_bytes(), np.uint8)
        return list(data.reshape(-1, 32, 48, 3))

    return {
        "video": ({"path": tmp_path / "out.mp4"}, lambda: read_frames(tmp_path / "out.mp4")),
        "images": ({"folder": tmp_path / "png"},
                   lambda: [np.asarray(Image.open(p)) for p in sorted((tmp_path / "png").iterdir())]),
        "pipe": ({"command": ["dd", f"of={raw}", "status=none"]}, raw_frames),
        "stream": ({"url": "udp://127.0.0.1:9"}, None),  # received and decoded in tests/test_sinks.py
        "null": ({}, None),
        "virtualcam": ({}, None),
        "ndi": ({"name": "masquerade-contract"}, None),
        "spout": ({}, None),
        "syphon": ({}, None),
    }


@pytest.mark.parametrize("name", sinks.names())
def test_sink_writes_what_it_is_given(name, tmp_path):
    """Every sink takes its row's keys (checked like a show row), then either writes HxWx3 uint8 frames
    or says in one line, naming itself, why it cannot run on this machine."""
    row, read_back = _sink_rows(tmp_path)[name]
    sinks.check(name, row)
    try:
        sink = sinks.open_sink(name, row, size=(48, 32), fps=10)
    except sinks.Unavailable as e:
        message = str(e)
        assert message.startswith(f"{name}:") and "\n" not in message
        pytest.skip(message)
    frames = [np.full((32, 48, 3), v, np.uint8) for v in (20, 120, 220)]
    for i, f in enumerate(frames):
        sink.write(f, Tick(i, i / 10))
    sink.close()
    if read_back is None:
        return
    back = read_back()
    assert len(back) == 3
    for got, want in zip(back, frames, strict=True):
        assert got.shape == want.shape and np.abs(got.astype(int) - want).mean() < 3
