"""TensorFlow-era StyleGAN2 / StyleGAN2-ADA pickles load without TensorFlow and without running anything,
give the images NVlabs' own legacy.py conversion gives, play, and pass through `models info/import`;
StyleGAN (v1) pickles and hostile files are refused in one line naming the file.

The pickles are written here by `tests/tf_pickle_writer.py` (seeded values, so the same bytes every time);
tests/data/tf_stylegan2/ holds fixed z, c and the images NVlabs' legacy.py + networks rendered from the
same files (see its README).
"""

import builtins
import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from engine import cli
from engine import show as shows
from engine.frame import Tick
from engine.generators import checkpoint, importers, stylegan2, tf_pickle
from engine.generators.checkpoint import CheckpointError
from engine.generators.nvlabs_pickle import UnsafePickleError
from engine.pipeline import Pipeline

from . import tf_pickle_writer as writer

DATA = Path(__file__).parent / "data" / "tf_stylegan2"
TOLERANCE = 1e-3
# sha256 over the variables (name, float32 bytes) of the files legacy.py converted: the writer still makes them
DIGESTS = {"tf_sg2_uncond32": "bd9114f831ce43a6a044a739461046dd7de6ea8737e0b182533fb45dd2a43a7d",
           "tf_ada_cond64": "66d02b9db927b07adb0dc2f35a3c10a249c11d0f6932877e92172d8fd940d8b4"}


def arrays(name: str) -> dict[str, torch.Tensor]:
    return {part: torch.from_numpy(np.load(DATA / f"{name}_{part}.npy")) for part in ("z", "c", "img", "img_psi07")}


def raw(g, z, c, psi):
    with torch.no_grad():
        return g.synthesis(g.mapping(z, c if g.c_dim else None, truncation_psi=psi), noise_mode="const")


def digest(path: Path) -> str:
    h = hashlib.sha256()
    for name, a in sorted(tf_pickle.read_tf_pickle(path).params().items()):
        h.update(name.encode())
        h.update(a.astype("<f4").tobytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", writer.REFERENCES)
def test_images_match_nvlabs_legacy_conversion(tmp_path, name):
    marker = tmp_path / "module_src_ran"
    path = writer.write_reference(tmp_path / f"{name}.pkl", name, f"open({str(marker)!r}, 'w').close()\n")
    assert digest(path) == DIGESTS[name]  # the very weights the references were made from
    loaded = importers.load(path)
    assert not marker.exists(), "the pickled build_module_src was executed"
    g, ref = loaded.module, arrays(name)
    assert loaded.format == "tf-stylegan2" and isinstance(g, stylegan2.Generator)
    assert loaded.card.provenance["source_format"].startswith("TensorFlow StyleGAN2")
    assert (raw(g, ref["z"], ref["c"], 1.0) - ref["img"]).abs().max() < TOLERANCE  # measured: 0
    assert (raw(g, ref["z"], ref["c"], 0.7) - ref["img_psi07"]).abs().max() < TOLERANCE
    assert (ref["img"][0] - ref["img"][1]).abs().max() > 100 * TOLERANCE  # the references are not trivial
    assert (ref["img"] - ref["img_psi07"]).abs().max() > 100 * TOLERANCE  # and dlatent_avg matters


def test_config_follows_the_tf_kwargs(tmp_path):
    loaded = importers.load(writer.write_reference(tmp_path / "ada.pkl", "tf_ada_cond64"))
    config = loaded.card.config
    assert (config["z_dim"], config["c_dim"], config["w_dim"], config["img_resolution"]) == (24, 4, 32, 64)
    assert config["mapping_kwargs"]["embed_features"] == 16 and config["mapping_kwargs"]["layer_features"] == 40
    s = config["synthesis_kwargs"]
    assert (s["channel_base"], s["channel_max"], s["conv_clamp"], s["architecture"]) == (256, 16, 0.5, "resnet")
    assert loaded.card.provenance["source_format"] == "TensorFlow StyleGAN2-ADA pickle (NVlabs stylegan2-ada)"
    uncond = importers.load(writer.write_reference(tmp_path / "sg2.pkl", "tf_sg2_uncond32"))
    assert uncond.card.provenance["unused_variables"] == ["lod"]


@pytest.mark.parametrize("protocol", [2, 3, 4])
def test_older_pickle_protocols_read(tmp_path, protocol):
    ref = writer.REFERENCES["tf_sg2_uncond32"]
    small = dict(ref["kwargs"], resolution=8)
    path = writer.write(tmp_path / f"p{protocol}.pkl", writer.stylegan2_networks(small, 3, "stylegan2"), protocol)
    g = importers.load(path).module
    assert g.resolution == 8 and g(torch.randn(1, 32)).shape == (1, 3, 8, 8)


def test_models_info_import_and_play(tmp_path, capsys):
    name = "tf_sg2_uncond32"
    path = writer.write_reference(tmp_path / "stylegan2-cats-config-f.pkl", name)
    assert cli.main(["models", "info", str(path)]) == 0
    info = capsys.readouterr().out
    for line in ("format        TensorFlow StyleGAN2 / StyleGAN2-ADA pickle, pickle", "architecture  stylegan2",
                 "resolution    32", "mapping       2 layers", "source_format TensorFlow StyleGAN2 pickle"):
        assert line in info, info
    out = tmp_path / "cats.safetensors"
    assert cli.main(["models", "import", str(path), "-o", str(out)]) == 0
    written, card = checkpoint.load(out)
    ref = arrays(name)
    assert card.provenance["source_format"].startswith("TensorFlow StyleGAN2")
    assert (raw(written, ref["z"], ref["c"], 0.7) - ref["img_psi07"]).abs().max() < TOLERANCE
    show = tmp_path / "show.toml"  # a show plays the TF pickle itself
    show.write_text(f'[model]\npath = "{path}"\n[output]\nsize = [32, 32]\n')
    image = Pipeline(shows.load(show), "cpu").generate(Tick(0, 0.0)).image
    assert image.shape == (1, 3, 32, 32) and 0 <= image.min() and image.max() <= 1


# ---------------------------------------------------------------- refusals: one line naming the file


def one_line_error(capsys, path: Path, fragment: str) -> None:
    assert cli.main(["models", "info", str(path)]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and path.name in err[0] and fragment in err[0], err


def test_stylegan1_is_named(tmp_path, capsys):
    path = writer.write(tmp_path / "karras2019stylegan-ffhq-1024x1024.pkl", writer.stylegan1_networks())
    with pytest.raises(CheckpointError, match=r"StyleGAN \(v1\) TensorFlow pickle: not supported; "):
        importers.load(path)
    one_line_error(capsys, path, "StyleGAN (v1) TensorFlow pickle: not supported")


def edited(tmp_path, label: str, edit) -> Path:
    gs, d, _ = writer.stylegan2_networks(dict(writer.REFERENCES["tf_sg2_uncond32"]["kwargs"], resolution=8), 3,
                                         "stylegan2")
    edit(gs.state)
    return writer.write(tmp_path / f"{label}.pkl", (gs, d, gs))


def _set_kwarg(key, value):
    return lambda state: state["static_kwargs"].__setitem__(key, value)


def _nan_weight(state):
    synthesis = state["components"]["synthesis"].state
    synthesis["variables"][-1] = (synthesis["variables"][-1][0], np.full([3], np.nan, np.float32))


def _drop_variable(state):
    state["components"]["synthesis"].state["variables"].pop()


BAD = {
    "huge-resolution": (_set_kwarg("resolution", 2**30), "img_resolution is 1073741824"),
    "float-fmaps": (_set_kwarg("fmap_base", 256.5), "fmap_base is 256.5"),
    "inf-clamp": (_set_kwarg("conv_clamp", float("inf")), "conv_clamp is inf"),
    "unknown-kwarg": (_set_kwarg("fmap_decay", 0.5), "unknown TensorFlow kwargs fmap_decay"),
    "nan-weights": (_nan_weight, "holds NaN or infinite values"),
    "missing-variable": (_drop_variable, "no variable synthesis/8x8/ToRGB/bias"),
    "config-a-d": (lambda s: s["components"]["synthesis"].state.__setitem__("build_func_name", "G_synthesis_revised"),
                   "without modulated convolutions (configs A-D): not supported"),
}


@pytest.mark.parametrize("label", BAD)
def test_bad_tf_files_are_refused_in_one_line(tmp_path, capsys, label):
    edit, fragment = BAD[label]
    one_line_error(capsys, edited(tmp_path, label, edit), fragment)


class _Payload:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


@pytest.mark.parametrize("where", ["static_kwargs", "variables", "components"])
def test_code_anywhere_in_a_tf_pickle_is_refused_and_nothing_runs(tmp_path, capsys, where):
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(_Payload(builtins.exec, f"open({str(tmp_path / 'control')!r}, 'w').close()")))
    assert (tmp_path / "control").exists()  # the payload is live

    def plant(state):
        payload = _Payload(os.system, f"touch {marker}")
        if where == "static_kwargs":
            state["static_kwargs"]["nonlinearity"] = payload
        elif where == "variables":
            state["components"]["mapping"].state["variables"].append(("Dense9/weight", payload))
        else:
            state["components"]["evil"] = payload

    path = edited(tmp_path, f"evil-{where}", plant)
    with pytest.raises(UnsafePickleError, match=rf"evil-{where}.pkl: refused global {os.system.__module__}.system"):
        tf_pickle.load_tf_pickle(path)
    one_line_error(capsys, path, "refused global")
    assert not marker.exists()


def test_damaged_tf_pickle_is_named(tmp_path, capsys):
    whole = writer.write_reference(tmp_path / "whole.pkl", "tf_sg2_uncond32").read_bytes()
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(whole[: len(whole) // 2])
    assert tf_pickle.is_tf_pickle(cut)  # told apart by its first class, before the damage
    with pytest.raises(CheckpointError, match=r"cut.pkl: not a readable TensorFlow pickle, truncated or damaged"):
        tf_pickle.load_tf_pickle(cut)
    one_line_error(capsys, cut, "not a readable")
