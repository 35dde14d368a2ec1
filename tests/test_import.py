"""Bring your own GAN: DCGAN-style `.pth` (PyTorch examples, DigitDCGAN), rosinality `.pt`, NVlabs `.pkl` and
our own `.safetensors` load into our modules, `masquerade models import` writes model files that give the
same images, `models info` describes every format, and bad files are refused in one line.

tests/data/rosinality/ holds a small network made and run by rosinality's own code (see its README); the
DigitDCGAN weights are the real published file in ../shared/fixtures (those tests skip without it).
"""

import argparse
import hashlib
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from engine import cli
from engine.generators import checkpoint, dcgan, dcgan_import, importers, stylegan2, tconv_stack
from engine.generators.checkpoint import CheckpointError

from . import test_import_biggan
from . import test_import_lucidrains as lucidrains
from . import test_import_nvlabs_sg3repo as sg3repo
from . import test_stylegan2 as sg2
from . import tf_pickle_writer as tf_writer
from .conftest import FIXTURES, masquerade
from .test_cli import assert_clean_error

MNIST = FIXTURES / "weights" / "dcgan-mnist-generator.pth"
ROSINALITY = Path(__file__).parent / "data" / "rosinality"
TOLERANCE = 1e-3
nvlabs_names = sg2.nvlabs_names  # the fixture that writes pickles in NVlabs' layout

needs_fixtures = pytest.mark.skipif(not FIXTURES.is_dir(),
                                    reason=f"third-party weight fixtures not found at {FIXTURES}")


def zs(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, dim, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- DigitDCGAN: the real MNIST generator


def largest_stroke_share(image: np.ndarray) -> float:
    """Share of the bright pixels that lie in the largest 8-connected bright region: a handwritten digit is
    (nearly) one stroke; wrong strides scatter it into a lattice of blobs."""
    bright, seen, best = image > 0.5, np.zeros(image.shape, bool), 0
    h, w = image.shape
    for i, j in zip(*np.nonzero(bright), strict=True):
        if seen[i, j]:
            continue
        stack, size, seen[i, j] = [(i, j)], 0, True
        while stack:
            y, x = stack.pop()
            size += 1
            for yy in range(max(y - 1, 0), min(y + 2, h)):
                for xx in range(max(x - 1, 0), min(x + 2, w)):
                    if bright[yy, xx] and not seen[yy, xx]:
                        seen[yy, xx] = True
                        stack.append((yy, xx))
        best = max(best, size)
    return best / max(int(bright.sum()), 1)


def digit_like(images: torch.Tensor) -> dict:
    """[B, 3, 28, 28] grey images -> the statistics MNIST digits have: dark background, dark border (MNIST
    centres each digit in a 20x20 box), a modest share of bright pixels, mostly one connected stroke."""
    x = images[:, 0].numpy()
    border = np.concatenate([x[:, :4].ravel(), x[:, -4:].ravel(), x[:, :, :4].ravel(), x[:, :, -4:].ravel()])
    return {"dark": float((x < 0.1).mean()), "bright": float((x > 0.5).mean()), "border": float(border.mean()),
            "stroke": float(np.median([largest_stroke_share(im) for im in x]))}


@needs_fixtures
def test_digitdcgan_is_recognised_from_its_shapes():
    loaded = importers.load(MNIST)
    g = loaded.module
    assert loaded.format == "dcgan" and loaded.card.architecture == "tconv-stack"
    assert isinstance(g, tconv_stack.Generator) and g.z_dim == 64 and g.resolution == 28 and g.img_channels == 1
    layers = [(d["in"], d["out"], d["kernel"], d["stride"], d["padding"], d["norm"], d["activation"])
              for d in loaded.card.config["layers"]]
    assert layers == [(64, 256, 3, 2, 0, "batch", "relu"), (256, 128, 4, 1, 0, "batch", "relu"),
                      (128, 64, 3, 2, 0, "batch", "relu"), (64, 1, 4, 2, 0, "none", "tanh")]
    assert loaded.card.provenance["layout"] == "deeplearning-ai-mnist"
    assert not g.training and not any(p.requires_grad for p in g.parameters())


@needs_fixtures
def test_digitdcgan_images_have_the_right_shape_range_and_vary():
    g = importers.load(MNIST).module
    with torch.no_grad():
        images = g(zs(16, 64))
        average = g(zs(4, 64, seed=1), truncation_psi=0)
    assert images.shape == (16, 3, 28, 28)  # MNIST's size, grey repeated to RGB
    assert images.min() >= 0 and images.max() <= 1
    assert torch.equal(images[:, 0], images[:, 1]) and torch.equal(images[:, 0], images[:, 2])
    flat = images.flatten(1)
    assert torch.cdist(flat, flat)[~torch.eye(16, dtype=torch.bool)].min() > 1.0  # every z its own digit
    torch.testing.assert_close(average, average[:1].expand_as(average))  # psi 0: z -> 0 for all


@needs_fixtures
def test_digitdcgan_draws_digits_and_wrong_strides_do_not():
    # no output of the original code exists, so check what its training data looked like (MNIST: 28x28,
    # white strokes on black, centred). Looked at by eye too: the 8x8 grid shows clear digits 0-9.
    g = importers.load(MNIST).module
    with torch.no_grad():
        stats = digit_like(g(zs(64, 64)))
    assert stats["dark"] > 0.7 and 0.05 < stats["bright"] < 0.3, stats
    assert stats["border"] < 0.05, stats
    assert stats["stroke"] > 0.9, stats
    # control: the same weights with every stride 2 give 36x36 images of scattered blobs
    state = importers.read_torch(MNIST)
    wrong = dcgan_import.recognise(state, "mnist", strides=[2, 2, 2, 2], paddings=[0, 0, 0, 0])
    bad = tconv_stack.Generator(**wrong.config)
    bad.load_state_dict(wrong.state)
    with torch.no_grad():
        images = bad.eval()(zs(64, 64))
    assert images.shape[-1] == 36
    assert digit_like(images[:, :, 4:-4, 4:-4])["stroke"] < 0.6


# ---------------------------------------------------------------- the PyTorch examples' DCGAN layout


def examples_netG(nz: int = 100, ngf: int = 64, nc: int = 3) -> nn.Module:
    """The generator of pytorch/examples dcgan/main.py (its layer list and its weights_init), BatchNorm
    running statistics made non-trivial as after training."""
    net = nn.Module()
    net.main = nn.Sequential(
        nn.ConvTranspose2d(nz, ngf * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 8), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 8, ngf * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 4), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
        nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh())
    torch.manual_seed(3)
    for m in net.modules():
        if isinstance(m, nn.ConvTranspose2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.num_batches_tracked.fill_(1000)
    return net.eval()


def examples_images(net: nn.Module, z: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        x = (net.main(z[:, :, None, None]) + 1) / 2  # the examples' output is [-1, 1]
    return x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x


@pytest.fixture(scope="module")
def examples_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("examples") / "netG_epoch_24.pth"
    torch.save(examples_netG().state_dict(), path)  # as main.py does every epoch
    return path


def test_examples_netG_is_our_dcgan_generator(examples_file):
    net = examples_netG()
    loaded = importers.load(examples_file)
    assert loaded.card.architecture == "dcgan" and isinstance(loaded.module, dcgan.Generator)
    assert loaded.card.config == dict(z_dim=100, resolution=64, base_channels=64, max_channels=512, out_channels=3)
    assert set(net.state_dict()) == set(dcgan.Generator(**loaded.card.config).state_dict())  # same key layout
    z = zs(3, 100)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(z), examples_images(net, z), atol=1e-6, rtol=0)


@pytest.mark.parametrize("variant", ["dataparallel", "wrapped", "bare-safetensors", "grey", "biased"])
def test_dcgan_layout_variants(tmp_path, variant):
    net = examples_netG(nz=16, ngf=8, nc=1 if variant == "grey" else 3)
    if variant == "biased":  # a bias on every transposed conv: off dcgan.Generator's plan
        for i in (0, 3, 6, 9, 12):
            old = net.main[i]
            new = nn.ConvTranspose2d(old.in_channels, old.out_channels, 4, old.stride, old.padding)
            new.weight.data.copy_(old.weight.data)
            new.bias.data.normal_(0, 0.1)
            net.main[i] = new
        net.eval()
    state = net.state_dict()
    path = tmp_path / "g.pth"
    if variant == "dataparallel":
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif variant == "wrapped":
        torch.save({"state_dict": state, "epoch": 24}, path)
    elif variant == "bare-safetensors":  # keys in alphabetical order: main.12 before main.3
        path = tmp_path / "g.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    loaded = importers.load(path)
    expected = "tconv-stack" if variant in ("grey", "biased") else "dcgan"
    assert loaded.card.architecture == expected
    z = zs(2, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.module(z), examples_images(net, z), atol=1e-6, rtol=0)


def test_unknown_kernel_sequence_is_refused(tmp_path):
    layers = [nn.ConvTranspose2d(8, 4, 5), nn.ConvTranspose2d(4, 3, 5)]
    path = tmp_path / "odd.pth"
    torch.save(nn.Sequential(*layers).state_dict(), path)
    with pytest.raises(CheckpointError, match=r"odd.pth: .*kernels \[5, 5\].*pytorch-examples, deeplearning-ai-mnist"):
        importers.load(path)


# ---------------------------------------------------------------- rosinality stylegan2-pytorch


def rosinality_reference():
    arrays = {name: torch.from_numpy(np.load(ROSINALITY / f"small64_{name}.npy")) for name in ("z", "img", "img_free")}
    return importers.load(ROSINALITY / "small64.pt"), arrays


def test_rosinality_matches_its_own_outputs():
    loaded, ref = rosinality_reference()
    g = loaded.module
    assert loaded.format == "rosinality" and isinstance(g, stylegan2.Generator)
    with torch.no_grad():
        raw = g.synthesis(g.mapping(ref["z"], truncation_psi=0.7), noise_mode="const")
        free = g.synthesis(g.mapping(ref["z"]), noise_mode="const")
        image = g(ref["z"], truncation_psi=0.7)
    assert raw.shape == ref["img"].shape == (4, 3, 64, 64)
    assert (raw - ref["img"]).abs().max() < TOLERANCE  # measured: about 1e-5
    assert (free - ref["img_free"]).abs().max() < TOLERANCE
    assert (image - ((ref["img"] + 1) / 2).clamp(0, 1)).abs().max() < TOLERANCE
    assert (ref["img"][0] - ref["img"][1]).abs().max() > 100 * TOLERANCE  # the reference is not trivial
    assert (ref["img"] - ref["img_free"]).abs().max() > 100 * TOLERANCE  # truncation matters
    with torch.no_grad():  # so do the noise buffers: without them the images move
        assert (g.synthesis(g.mapping(ref["z"]), noise_mode="none") - ref["img_free"]).abs().max() > 100 * TOLERANCE


def test_rosinality_names_map_exactly():
    loaded, _ = rosinality_reference()
    g, state = loaded.module, torch.load(ROSINALITY / "small64.pt", weights_only=True)
    ema = state["g_ema"]
    assert loaded.card.config == dict(z_dim=64, c_dim=0, w_dim=64, img_resolution=64, img_channels=3,
                                      mapping_kwargs=dict(num_layers=2, lr_multiplier=0.01),
                                      synthesis_kwargs=dict(channel_base=512, channel_max=16))
    assert g.num_ws == 10  # rosinality's n_latent = 2 * log2(64) - 2
    own = g.state_dict()
    torch.testing.assert_close(own["mapping.w_avg"], state["latent_avg"], atol=0, rtol=0)
    torch.testing.assert_close(own["synthesis.b4.const"], ema["input.input"][0], atol=0, rtol=0)
    torch.testing.assert_close(own["synthesis.b4.conv1.noise_const"], ema["noises.noise_0"][0, 0], atol=0, rtol=0)
    torch.testing.assert_close(own["synthesis.b64.conv1.noise_const"], ema["noises.noise_8"][0, 0], atol=0, rtol=0)
    torch.testing.assert_close(own["synthesis.b64.conv0.weight"], ema["convs.6.conv.weight"][0], atol=0, rtol=0)
    torch.testing.assert_close(own["synthesis.b8.torgb.bias"], ema["to_rgbs.0.bias"].flatten(), atol=0, rtol=0)
    torch.testing.assert_close(own["mapping.fc1.weight"], ema["style.2.weight"], atol=0, rtol=0)
    assert own["synthesis.b32.conv1.noise_strength"].item() == ema["convs.5.noise.weight"].item() != 0


def test_rosinality_training_checkpoint(tmp_path):
    # train.py saves g, d, g_ema, optimiser states and its argparse Namespace, and no latent_avg
    state = torch.load(ROSINALITY / "small64.pt", weights_only=True)
    path = tmp_path / "000100.pt"
    args = argparse.Namespace(size=64, latent=64, n_mlp=2, channel_multiplier=1, path="lmdb", r1=10.0)
    torch.save({"g": state["g_ema"], "d": {}, "g_ema": state["g_ema"], "g_optim": {}, "d_optim": {},
                "args": args, "ada_aug_p": 0.0}, path)
    loaded, ref = importers.load(path), rosinality_reference()[1]
    assert loaded.card.provenance["entry"] == "g_ema" and "estimated" in loaded.card.provenance["w_avg"]
    g = loaded.module
    with torch.no_grad():
        assert (g.synthesis(g.mapping(ref["z"]), noise_mode="const") - ref["img_free"]).abs().max() < TOLERANCE
    # the estimate is near the mean rosinality computed from its own 4096 samples
    assert (g.mapping.w_avg - state["latent_avg"]).abs().max() < 0.2


def test_rosinality_variant_with_extra_tensors_is_refused(tmp_path):
    state = torch.load(ROSINALITY / "small64.pt", weights_only=True)
    state["g_ema"]["to_rgbs.0.iwt.weight"] = torch.zeros(3)  # SWAGAN-like extra module
    path = tmp_path / "swagan.pt"
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r"swagan.pt: .*does not have.*to_rgbs.0.iwt.weight"):
        importers.load(path)


# ---------------------------------------------------------------- models import / models info, every format


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def formats(tmp_path, nvlabs_names, examples_file):
    """A maker of one file of each supported format, some named with misleading extensions (detection is by
    content); each test makes only the one it reads."""

    def nvlabs():
        nv, _, _ = sg2.reference("cond3_resnet16")
        return sg2.write_snapshot(nvlabs_names, tmp_path / "network-snapshot-000000.pkl", nv, "")

    def renamed():  # a rosinality checkpoint named .pkl
        (tmp_path / "renamed.pkl").write_bytes((ROSINALITY / "small64.pt").read_bytes())
        return tmp_path / "renamed.pkl"

    def bare_safetensors():
        ema = torch.load(ROSINALITY / "small64.pt", weights_only=True)["g_ema"]
        save_file({k: v.contiguous() for k, v in ema.items()}, str(tmp_path / "g_ema.safetensors"))
        return tmp_path / "g_ema.safetensors"

    def biggan():  # the package's folder (config.json + pytorch_model.bin): the weights file names the model
        (tmp_path / "biggan-deep-128").mkdir()
        torch.save(test_import_biggan.package_state(), tmp_path / "biggan-deep-128" / "pytorch_model.bin")
        shutil.copy(test_import_biggan.DATA / "small128_config.json", tmp_path / "biggan-deep-128" / "config.json")
        return tmp_path / "biggan-deep-128" / "pytorch_model.bin"

    def lucidrains_model(name, make):  # the trainers' models/<name>/model_N.pt
        (tmp_path / name).mkdir()
        torch.save(make(), tmp_path / name / "model_3.pt")
        return tmp_path / name / "model_3.pt"

    makers = {"nvlabs": nvlabs, "rosinality": lambda: ROSINALITY / "small64.pt", "rosinality-as-pkl": renamed,
              "rosinality-bare-safetensors": bare_safetensors, "dcgan-examples": lambda: examples_file,
              "masquerade": lambda: Path(sg2.DATA / "cond3_resnet16.safetensors"),
              "tf-stylegan2": lambda: tf_writer.write_reference(tmp_path / "stylegan2-cats.pkl", "tf_sg2_uncond32"),
              "nvlabs-sg3repo-stylegan2": lambda: sg3repo.write(nvlabs_names, tmp_path / "stylegan2-sg3repo.pkl",
                                                                "sg3repo_uncond32"),
              "biggan": biggan,
              "lightweight-gan": lambda: lucidrains_model("lightweight-gan",
                                                          lambda: lucidrains.checkpoint("lightweight128")),
              "lucidrains-stylegan2": lambda: lucidrains_model("stylegan2-pytorch",
                                                               lambda: lucidrains.sg2_checkpoint("sg2l_32"))}
    if MNIST.is_file():
        makers["dcgan-mnist"] = lambda: MNIST
    return makers


FORMAT_NAMES = ["nvlabs", "rosinality", "rosinality-as-pkl", "rosinality-bare-safetensors", "dcgan-examples",
                "dcgan-mnist", "masquerade", "tf-stylegan2", "nvlabs-sg3repo-stylegan2", "biggan", "lightweight-gan",
                "lucidrains-stylegan2"]
EXPECTED = {  # format key, architecture, source_format, summary lines of `models info`
    "nvlabs": ("nvlabs", "stylegan2", "NVlabs StyleGAN2",
               ["resolution    16", "mapping       2 layers", "conditional   yes (c_dim 3)"]),
    "rosinality": ("rosinality", "stylegan2", "rosinality stylegan2-pytorch checkpoint (torch zip)",
                   ["resolution    64", "z_dim         64", "w_dim         64", "mapping       2 layers",
                    "conditional   no"]),
    "rosinality-as-pkl": ("rosinality", "stylegan2", "rosinality stylegan2-pytorch checkpoint (torch zip)",
                          ["resolution    64"]),
    "rosinality-bare-safetensors": ("rosinality", "stylegan2", "rosinality stylegan2-pytorch checkpoint (safetensors)",
                                    ["resolution    64"]),
    "dcgan-examples": ("dcgan", "dcgan", "DCGAN-style state dict (torch zip)",
                       ["resolution    64", "z_dim         100", "mapping       none"]),
    "dcgan-mnist": ("dcgan", "tconv-stack", "DCGAN-style state dict (torch zip)",
                    ["resolution    28", "z_dim         64", "channels      1"]),
    "masquerade": ("masquerade", "stylegan2", "Masquerade model file",
                   ["resolution    16", "conditional   yes (c_dim 3)"]),
    "tf-stylegan2": ("tf-stylegan2", "stylegan2", "TensorFlow StyleGAN2 pickle",
                     ["resolution    32", "mapping       2 layers", "conditional   no"]),
    "nvlabs-sg3repo-stylegan2": ("nvlabs", "stylegan2", "NVlabs StyleGAN2",
                                 ["resolution    32", "z_dim         32", "conditional   no"]),
    "biggan": ("biggan", "biggan", "pytorch-pretrained-biggan BigGAN-deep",
               ["resolution    128", "z_dim         32", "conditional   yes (c_dim 1000)"]),
    "lightweight-gan": ("lightweight-gan", "lightweight-gan", "lucidrains lightweight-gan checkpoint (torch zip)",
                        ["resolution    128", "z_dim         32", "mapping       none"]),
    "lucidrains-stylegan2": ("lucidrains-stylegan2", "lucidrains-stylegan2",
                             "lucidrains stylegan2-pytorch checkpoint (torch zip)",
                             ["resolution    32", "w_dim         32", "mapping       3 layers"]),
}


def same_images(a: torch.nn.Module, b: torch.nn.Module) -> None:
    z = zs(2, a.z_dim, seed=5)
    c = torch.eye(a.c_dim)[:2] if getattr(a, "c_dim", 0) else None
    kwargs = {"c": c} if c is not None else {}
    with torch.no_grad():
        torch.testing.assert_close(b(z, truncation_psi=0.7, **kwargs), a(z, truncation_psi=0.7, **kwargs),
                                   atol=0, rtol=0)


@pytest.mark.parametrize("name", FORMAT_NAMES)
def test_models_import_and_info_via_the_command(tmp_path, formats, name):
    if name not in formats:
        pytest.skip(f"third-party weight fixtures not found at {FIXTURES}")
    source, (fmt, architecture, source_format, info_lines) = formats[name](), EXPECTED[name]
    out = tmp_path / "out" / "imported.safetensors"
    result = masquerade("models", "import", source, "-o", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout and architecture in result.stdout
    direct = importers.load(source)
    assert direct.format == fmt and direct.card.architecture == architecture
    written, card = checkpoint.load(out)
    assert card.architecture == architecture and card.config == direct.card.config
    assert card.provenance["source_file"] == source.name and card.provenance["source_sha256"] == sha256(source)
    assert card.provenance["source_format"].startswith(source_format)
    if fmt == "masquerade":  # re-importing our own file keeps its provenance
        assert card.provenance["made_by"] == direct.card.provenance["made_by"]
    same_images(direct.module, written)

    listing = sorted(source.parent.iterdir()) + sorted(tmp_path.rglob("*"))
    info = masquerade("models", "info", source)
    assert info.returncode == 0, info.stderr
    assert sorted(source.parent.iterdir()) + sorted(tmp_path.rglob("*")) == listing  # info writes nothing
    assert f"architecture  {architecture}" in info.stdout and "parameters" in info.stdout
    assert info.stdout.splitlines()[1].startswith("  format")
    for line in info_lines:
        assert line in info.stdout, info.stdout


def test_info_on_the_imported_file_names_its_source(tmp_path):
    out = tmp_path / "ros.safetensors"
    importers.import_model(ROSINALITY / "small64.pt", out)
    text = importers.describe(importers.load(out))
    assert "format        Masquerade model file" in text
    assert "source_format rosinality stylegan2-pytorch checkpoint (torch zip)" in text
    assert f"source_sha256 {sha256(ROSINALITY / 'small64.pt')}" in text


# ---------------------------------------------------------------- bad files: exit 2, one line naming the file


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli.main([str(a) for a in argv])
    return code, capsys.readouterr().err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    marker = tmp_path / "pwned"
    whole = (ROSINALITY / "small64.pt").read_bytes()
    files = {
        "garbage": (b"\x13\x37 this is not a model " * 50, "unknown model format; known:"),
        "empty": (b"", "empty file"),
        "truncated-zip": (whole[: len(whole) // 2], "not a readable torch checkpoint"),
        "code-in-torch-zip": (None, "refused"),
        "code-in-pickle": (pickle.dumps({"G_ema": _Payload(marker)}), "refused global"),
        # not recognisably TensorFlow's, so named as what the NVlabs reader expected (importers._load)
        "truncated-pickle": (pickle.dumps({"G_ema": list(range(1000))})[:100], "not a readable NVlabs pickle"),
        "not-a-generator": (None, "holds no generator read here"),
        "bad-safetensors": (b"\x10\x00\x00\x00\x00\x00\x00\x00{broken json....", "not a readable safetensors"),
    }
    out = {}
    for name, (data, fragment) in files.items():
        path = tmp_path / f"{name}.pt"
        if name == "code-in-torch-zip":
            torch.save({"g_ema": _Payload(marker)}, path)
        elif name == "not-a-generator":  # a super-resolution net: Conv2d and PReLU, no transposed convs
            torch.save(nn.Sequential(nn.Conv2d(3, 8, 3), nn.PReLU(), nn.Conv2d(8, 3, 3)).state_dict(), path)
        else:
            path.write_bytes(data)
        out[name] = (path, fragment)
    return out


def test_bad_files_exit_2_with_one_line(tmp_path, capsys):
    for name, (path, fragment) in bad_files(tmp_path).items():
        for argv in (("models", "info", path), ("models", "import", path, "-o", tmp_path / "x.safetensors")):
            code, err = run_cli(capsys, *argv)
            assert_one_line_error(code, err, path.name, fragment)
            assert not (tmp_path / "x.safetensors").exists(), name
    assert not (tmp_path / "pwned").exists(), "a payload ran"
    code, err = run_cli(capsys, "models", "info", tmp_path / "absent.pt")
    assert_one_line_error(code, err, "absent.pt", "no such file")
    code, err = run_cli(capsys, "models", "import", ROSINALITY / "small64.pt")
    assert_one_line_error(code, err, "-o OUT.safetensors")
    code, err = run_cli(capsys, "models", "import", ROSINALITY / "small64.pt", "-o", tmp_path / "x.pt")
    assert_one_line_error(code, err, "x.pt", ".safetensors")


def test_the_real_command_refuses_a_code_running_checkpoint(tmp_path):
    marker = tmp_path / "pwned"
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))  # the payload is live: a plain pickle load runs it
    assert control.exists()
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _Payload(marker)}, path)
    assert_clean_error(masquerade("models", "import", path, "-o", tmp_path / "x.safetensors"), "evil.pt", "refused")
    assert not marker.exists() and not (tmp_path / "x.safetensors").exists()
