"""Makes tests/data/lucidrains/lightweight_* with lightweight-gan's own code (see README.md).

    python3 -m venv /tmp/lwvenv && /tmp/lwvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 lightweight-gan
    /tmp/lwvenv/bin/python tests/data/lucidrains/make_reference.py
"""
import sys
from pathlib import Path

import numpy as np
import torch

torch.cuda.is_available = lambda: True  # the package asserts a GPU at import; nothing here runs on one
from lightweight_gan.lightweight_gan import Generator, Noise  # noqa: E402
from lightweight_gan.version import __version__  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.resolve().parents[2]))
from tests.foreign_writer import calibrate, fill, read_shapes, write_shapes  # noqa: E402

torch.set_grad_enabled(False)
MODELS = {  # name: (Generator kwargs, seed of G, seed of GE)
    "lightweight128": (dict(image_size=128, latent_dim=32, fmap_max=32, attn_res_layers=[32]), 21, 22),
    "lightweight128_fca": (dict(image_size=128, latent_dim=16, fmap_max=16, freq_chan_attn=True), 31, 32),
}


def fixed_noise(self, x, noise=None):  # Masquerade's noise: a fixed map per layer instead of fresh randn
    gen = torch.Generator().manual_seed(self.index)
    return x + self.weight * torch.randn(1, 1, *x.shape[-2:], generator=gen)


Noise.forward = fixed_noise
z = torch.from_numpy(np.random.default_rng(5).standard_normal((3, 32)).astype(np.float32))
for name, (kwargs, seed_g, seed_ge) in MODELS.items():
    for part, seed in (("G", seed_g), ("GE", seed_ge)):
        g = Generator(**kwargs).eval()
        for i, layer in enumerate(g.layers):
            layer[0][3].index = i
        write_shapes(g.state_dict(), HERE / f"{name}_shapes.json")
        shapes = read_shapes(HERE / f"{name}_shapes.json")
        g.load_state_dict(fill(shapes, seed), strict=True)
        zz = z[:, :kwargs["latent_dim"]]
        measured = calibrate(g, shapes, seed, lambda g=g, zz=zz: g(torch.cat([zz, -zz, zz.flip(0)])))
        np.savez(HERE / f"{name}_{part}_standing.npz", **measured)
        assert all(torch.equal(v, fill(shapes, seed, measured)[k]) for k, v in g.state_dict().items())
        if part == "GE":
            np.save(HERE / f"{name}_z.npy", zz.numpy())
            np.save(HERE / f"{name}_img.npy", g(zz).numpy())  # the raw out_conv output (generate_ clamps)
            print(name, __version__, g(zz).std().item(), g(zz).min().item(), g(zz).max().item())
