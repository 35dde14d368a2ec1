"""Makes tests/data/biggan/*.npy and *_shapes.json with pytorch-pretrained-biggan's own code (see README.md).

    python3 -m venv /tmp/bgvenv && /tmp/bgvenv/bin/pip install torch==2.13.0 pytorch-pretrained-biggan scipy
    /tmp/bgvenv/bin/python tests/data/biggan/make_reference.py
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from pytorch_pretrained_biggan import BigGAN, BigGANConfig
from pytorch_pretrained_biggan.utils import truncated_noise_sample
from scipy.special import ndtr
from scipy.stats import truncnorm

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.resolve().parents[2]))
from tests.foreign_writer import calibrate, fill, write_shapes  # noqa: E402

SMALL = dict(output_dim=128, z_dim=32, class_embed_dim=32, channel_width=4, num_classes=1000,
             layers=BigGANConfig().layers, attention_layer_position=8, eps=1e-4, n_stats=51)
SEED = 14

torch.set_grad_enabled(False)
write_shapes(BigGAN(BigGANConfig()).state_dict(), HERE / "biggan_deep_128_shapes.json")  # the real 128 layout
model = BigGAN(BigGANConfig.from_dict(SMALL)).eval()
write_shapes(model.state_dict(), HERE / "small128_shapes.json")
(HERE / "small128_config.json").write_text(json.dumps(SMALL, indent=2) + "\n")
shapes = json.loads((HERE / "small128_shapes.json").read_text())
model.load_state_dict(fill(shapes, SEED), strict=True)
calib_z = torch.from_numpy(truncated_noise_sample(batch_size=8, dim_z=32, truncation=1.0, seed=3))
calib_c = torch.eye(1000)[[0, 100, 207, 300, 500, 700, 900, 980]]
measured = calibrate(model, shapes, SEED, lambda: model(calib_z, calib_c, 1.0))
np.savez(HERE / "small128_standing.npz", **measured)
again = fill(shapes, SEED, measured)
assert all(torch.equal(v, again[k]) for k, v in model.state_dict().items()), "fill does not reproduce the model"
classes = np.zeros((3, 1000), np.float32)
classes[0, 207] = 1  # golden retriever
classes[1, 980] = 1  # volcano
classes[2, 1], classes[2, 980] = 0.3, 0.7  # a mix, as class walks pass between keyframes
for name, psi in (("t040", 0.4), ("t025", 0.25), ("t100", 1.0)):
    z = truncated_noise_sample(batch_size=3, dim_z=32, truncation=psi, seed=1)
    img = model(torch.from_numpy(z), torch.from_numpy(classes), psi)
    np.save(HERE / f"small128_z_{name}.npy", z)
    np.save(HERE / f"small128_img_{name}.npy", img.numpy())
np.save(HERE / "small128_c.npy", classes)
normal = np.random.default_rng(2).standard_normal((4, 32)).astype(np.float32)
np.save(HERE / "normal_z.npy", normal)
np.save(HERE / "normal_z_truncnorm.npy", truncnorm.ppf(ndtr(normal), -2, 2))
print("ok", {k: v.shape for k, v in model.state_dict().items() if "layers.0." in k})
