"""Makes tests/data/lucidrains/sg2l_* with stylegan2-pytorch's own code (see README.md).

    python3 -m venv /tmp/sg2lvenv && /tmp/sg2lvenv/bin/pip install torch==2.14.1 torchvision==0.29.1 stylegan2-pytorch
    /tmp/sg2lvenv/bin/python tests/data/lucidrains/make_reference_stylegan2.py
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch

torch.cuda.is_available = lambda: True  # the package asserts a GPU at import; nothing here runs on one
from stylegan2_pytorch.stylegan2_pytorch import Generator, StyleVectorizer  # noqa: E402
from stylegan2_pytorch.version import __version__  # noqa: E402

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.resolve().parents[2]))
from tests.foreign_writer import lucidrains_stylegan2, read_shapes  # noqa: E402

torch.set_grad_enabled(False)
NOISE_SEED = 0  # Masquerade's fixed noise image: torch.rand(1, R, R, 1) from Generator().manual_seed(0)
MODELS = {  # name: (StyleGAN2 kwargs, seeds of S, G, SE, GE)
    "sg2l_32": (dict(image_size=32, latent_dim=32, style_depth=3, network_capacity=4, lr_mlp=0.1),
                dict(S=41, G=42, SE=43, GE=44)),
    "sg2l_64_attn": (dict(image_size=64, latent_dim=48, style_depth=2, network_capacity=4, fmap_max=32,
                          attn_layers=[2, 4], transparent=True, no_const=True, lr_mlp=0.05),
                     dict(S=51, G=52, SE=53, GE=54)),
}
for name, (kw, seeds) in MODELS.items():
    S = StyleVectorizer(kw["latent_dim"], kw["style_depth"], lr_mul=kw["lr_mlp"]).eval()
    G = Generator(kw["image_size"], kw["latent_dim"], kw["network_capacity"], transparent=kw.get("transparent", False),
                  attn_layers=kw.get("attn_layers", []), no_const=kw.get("no_const", False),
                  fmap_max=kw.get("fmap_max", 512)).eval()
    shapes = {**{f"S.{k}": list(v.shape) for k, v in S.state_dict().items()},
              **{f"G.{k}": list(v.shape) for k, v in G.state_dict().items()}}
    (HERE / f"{name}_shapes.json").write_text(json.dumps(shapes, indent=0) + "\n")
    gan = lucidrains_stylegan2(read_shapes(HERE / f"{name}_shapes.json"), seeds, kw["lr_mlp"])
    S.load_state_dict({k[3:]: v for k, v in gan.items() if k.startswith("SE.")}, strict=True)
    G.load_state_dict({k[3:]: v for k, v in gan.items() if k.startswith("GE.")}, strict=True)
    n, size, latent = G.num_layers, kw["image_size"], kw["latent_dim"]
    z = torch.from_numpy(np.random.default_rng(7).standard_normal((4, latent)).astype(np.float32))
    noise = torch.rand(1, size, size, 1, generator=torch.Generator().manual_seed(NOISE_SEED)).expand(3, -1, -1, -1)
    w = S(z)  # [4, latent]
    styles = w[:3, None].expand(-1, n, -1).clone()  # noise_list: one w for every block
    styles[2, n // 2:] = w[3]  # and one mixed: the later blocks take z[3]'s style
    img = G(styles, noise)  # [3, 3 or 4, R, R], before the trainer's clamp to [0, 1]
    np.save(HERE / f"{name}_z.npy", z.numpy())
    np.save(HERE / f"{name}_img.npy", img.numpy())
    print(name, __version__, tuple(img.shape), img.std().item(), img.min().item(), img.max().item(),
          (img[0] - img[1]).abs().mean().item(), (img[0] - img[2]).abs().mean().item())
