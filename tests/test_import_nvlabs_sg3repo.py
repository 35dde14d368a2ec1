"""StyleGAN2 pickles written by NVlabs' stylegan3 repository (`train.py --cfg=stylegan2`, the published
`stylegan2-*.pkl`): its `networks_stylegan2.Generator` takes the synthesis settings as flat keywords and
clamps convolutions at 256 unless told otherwise. They load, play, and pass through `models info/import`;
images equal the original code's.

tests/data/stylegan2_sg3repo/ holds two small networks made by NVlabs' own code (see its README): their
weights and recorded constructor kwargs (`*_weights.npz`), fixed z, c and NVlabs' images. The pickles
are rebuilt here in NVlabs' layout by `test_stylegan2`'s writer, so no NVlabs code is needed.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import cli
from engine import show as shows
from engine.frame import Tick
from engine.generators import checkpoint, importers, stylegan2
from engine.generators.checkpoint import CheckpointError
from engine.generators.nvlabs_pickle import NVlabsPickleError, load_nvlabs_pickle
from engine.pipeline import Pipeline

from . import test_stylegan2 as sg2

DATA = Path(__file__).parent / "data" / "stylegan2_sg3repo"
TOLERANCE = 1e-3
NETWORKS = {"sg3repo_uncond32": 256, "sg3repo_cond64_clamp05": 0.5}  # name -> the clamp NVlabs ran with
nvlabs_names = sg2.nvlabs_names  # the fixture that writes pickles in NVlabs' layout


def saved(name: str) -> tuple[dict, dict[str, torch.Tensor]]:
    """(NVlabs' recorded init kwargs, its state dict) for one reference network."""
    with np.load(DATA / f"{name}_weights.npz") as f:
        kwargs = json.loads(str(f["__init_kwargs__"]))
        weights = {k: torch.from_numpy(f[k]) for k in f.files if k != "__init_kwargs__"}
    return kwargs, weights


def arrays(name: str) -> dict[str, torch.Tensor]:
    return {part: torch.from_numpy(np.load(DATA / f"{name}_{part}.npy")) for part in ("z", "c", "img", "img_psi07")}


def module_tree(kwargs: dict, weights: dict) -> stylegan2.Generator:
    """Our module with NVlabs' weights: the same module tree, so `nvlabs_layout` records it as NVlabs would."""
    synthesis = {k: kwargs[k] for k in ("channel_base", "channel_max", "architecture") if k in kwargs}
    g = stylegan2.Generator(kwargs["z_dim"], kwargs["c_dim"], kwargs["w_dim"], kwargs["img_resolution"],
                            kwargs["img_channels"], kwargs["mapping_kwargs"], synthesis)
    g.load_state_dict(weights, strict=True)
    return g


def write(write_pickle, path: Path, name: str, edit_kwargs=None, layer_clamp=None) -> Path:
    """A stylegan3-repository pickle of `name`: flat init kwargs exactly as NVlabs recorded them (optionally
    edited), and, with `layer_clamp`, each synthesis layer's `conv_clamp` attribute as NVlabs stores it."""
    kwargs, weights = saved(name)
    (edit_kwargs or (lambda k: None))(kwargs)

    def data(easy_dict):
        init = dict(kwargs, mapping_kwargs=easy_dict(kwargs.get("mapping_kwargs", {})))
        record = sg2.nvlabs_layout(module_tree(saved(name)[0], weights), "", init)
        if layer_clamp is not None:
            _set_layer_clamps(record, layer_clamp)
        return {"G": record, "D": None, "G_ema": record, "augment_pipe": None, "training_set_kwargs": None}

    return write_pickle(path, data)


def _set_layer_clamps(persistent, clamp) -> None:
    meta = persistent.meta
    if meta["class_name"] in ("SynthesisLayer", "ToRGBLayer"):
        meta["state"]["conv_clamp"] = clamp(meta) if callable(clamp) else clamp
    for sub in meta["state"]["_modules"].values():
        _set_layer_clamps(sub, clamp)


def raw(g, z, c, psi):
    with torch.no_grad():
        return g.synthesis(g.mapping(z, c if g.c_dim else None, truncation_psi=psi), noise_mode="const")


@pytest.mark.parametrize("name", NETWORKS)
def test_images_match_nvlabs(tmp_path, nvlabs_names, name):
    path = write(nvlabs_names, tmp_path / "network-snapshot-000200.pkl", name)
    loaded = importers.load(path)
    g, ref = loaded.module, arrays(name)
    assert loaded.format == "nvlabs" and isinstance(g, stylegan2.Generator)
    assert loaded.card.config["synthesis_kwargs"]["conv_clamp"] == NETWORKS[name]
    assert "stylegan3 repository" in loaded.card.provenance["layout"]
    assert (raw(g, ref["z"], ref["c"], 1.0) - ref["img"]).abs().max() < TOLERANCE  # measured: 0
    assert (raw(g, ref["z"], ref["c"], 0.7) - ref["img_psi07"]).abs().max() < TOLERANCE
    assert (ref["img"][0] - ref["img"][1]).abs().max() > 100 * TOLERANCE  # the references are not trivial
    assert (ref["img"] - ref["img_psi07"]).abs().max() > 100 * TOLERANCE


@pytest.mark.parametrize("name", NETWORKS)
def test_the_clamp_bites(name):
    # the same weights without the clamp give another image: dropping the clamp would be seen
    kwargs, weights = saved(name)
    loose = module_tree(kwargs, weights)
    ref = arrays(name)
    assert (raw(loose, ref["z"], ref["c"], 1.0) - ref["img"]).abs().max() > 100 * TOLERANCE


def test_the_clamp_the_layers_hold_wins(tmp_path, nvlabs_names):
    # kwargs that say nothing of the clamp (here nested, where the default is none): the layers' own
    # conv_clamp attributes, which are what NVlabs' forward uses, decide
    name = "sg3repo_uncond32"
    nested = write(nvlabs_names, tmp_path / "nested.pkl", name, edit_kwargs=nest, layer_clamp=256)
    g, ref = importers.load(nested).module, arrays(name)
    assert g.config["synthesis_kwargs"] == {"channel_base": 512, "channel_max": 32, "conv_clamp": 256}
    assert (raw(g, ref["z"], ref["c"], 1.0) - ref["img"]).abs().max() < TOLERANCE
    mixed = write(nvlabs_names, tmp_path / "mixed.pkl", name,
                  layer_clamp=lambda meta: 256 if meta["class_name"] == "SynthesisLayer" else None)
    with pytest.raises(NVlabsPickleError, match=r"mixed.pkl: .*different conv_clamp values \(256, None\)"):
        load_nvlabs_pickle(mixed)


def nest(kwargs: dict) -> None:
    """stylegan2-ada-pytorch's layout: synthesis settings under synthesis_kwargs."""
    kwargs["synthesis_kwargs"] = {k: kwargs.pop(k) for k in ("channel_base", "channel_max")}
    del kwargs["fused_modconv_default"]


def test_models_info_import_and_play(tmp_path, nvlabs_names, capsys):
    name = "sg3repo_uncond32"
    path = write(nvlabs_names, tmp_path / "stylegan2-faces-32x32.pkl", name)
    assert cli.main(["models", "info", str(path)]) == 0
    info = capsys.readouterr().out
    for line in ("architecture  stylegan2", "resolution    32", "mapping       2 layers", '"conv_clamp": 256',
                 "source_format NVlabs StyleGAN2", "layout        NVlabs stylegan3 repository"):
        assert line in info, info
    out = tmp_path / "faces.safetensors"
    assert cli.main(["models", "import", str(path), "-o", str(out)]) == 0
    written, card = checkpoint.load(out)
    ref = arrays(name)
    assert card.config["synthesis_kwargs"]["conv_clamp"] == 256
    assert (raw(written, ref["z"], ref["c"], 0.7) - ref["img_psi07"]).abs().max() < TOLERANCE
    show = tmp_path / "show.toml"  # a show plays the pickle itself
    show.write_text(f'[model]\npath = "{path}"\n[output]\nsize = [32, 32]\n')
    image = Pipeline(shows.load(show), "cpu").generate(Tick(0, 0.0)).image
    assert image.shape == (1, 3, 32, 32) and 0 <= image.min() and image.max() <= 1


BAD_NUMBERS = {
    "img_resolution": (2**40, "img_resolution is 1099511627776"),
    "channel_max": (1 << 30, "channel_max is 1073741824"),
    "channel_base": (-512, "channel_base is -512"),
    "conv_clamp": (math.inf, "conv_clamp is inf"),
    "z_dim": (1.5, "z_dim is 1.5"),
}


@pytest.mark.parametrize("key", BAD_NUMBERS)
def test_numbers_out_of_range_are_refused_before_building(tmp_path, nvlabs_names, capsys, key):
    value, fragment = BAD_NUMBERS[key]
    path = write(nvlabs_names, tmp_path / f"bad_{key}.pkl", "sg3repo_uncond32",
                 edit_kwargs=lambda k: k.__setitem__(key, value))
    with pytest.raises(CheckpointError, match=rf"bad_{key}.pkl: cannot build a StyleGAN2 .*{fragment}"):
        load_nvlabs_pickle(path)
    assert cli.main(["models", "info", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and path.name in err[0] and fragment in err[0], err
