"""StyleGAN3 translate and rotate as live params: real OSC over loopback (and a show's own values) move the
picture exactly as the generator called with NVlabs' transform does; other models refuse what a show sets
and ignore the default faders; every value is range-checked."""

import numpy as np
import pytest
import torch
from pythonosc.udp_client import SimpleUDPClient

from engine import show as shows
from engine.controls.osc import Receiver
from engine.controls.state import ControlState
from engine.frame import Tick
from engine.generators.stylegan3 import transform_matrix
from engine.pipeline import Pipeline, make_bus
from engine.show import ShowError

from .conftest import DEFAULT_MODEL, ROOT, until

DATA = ROOT / "tests" / "data"
SG3_T = DATA / "stylegan3" / "t_uncond32.safetensors"  # NVlabs-made config T, 32 px
SG3_R = DATA / "stylegan3" / "r_cond3_32.safetensors"  # config R (rotation equivariant), 3 classes
SG2 = DATA / "stylegan2" / "uncond_skip32.safetensors"


def load(tmp_path, model, text=""):
    path = tmp_path / "show.toml"
    path.write_text(f'[model]\npath = "{model}"\n[walk]\ntruncation = 0.7\n{text}')
    return shows.load(path)


def pipeline(tmp_path, model, text=""):
    show = load(tmp_path, model, text)
    return Pipeline(show, "cpu", ControlState(make_bus(show)))


def frame(p, t):
    return p.generate(Tick(round(t * 30), t)).image


def direct(p, t, c=None, **moved):
    """The frame at show time t made by calling the generator itself, with the transform given outright."""
    z = p.walk.step(Tick(round(t * 30), t))  # [1, z_dim]: energy 0, no bookmarks or directions
    transform = transform_matrix(**moved) if moved else None
    with torch.no_grad():
        return p.generator(z, c, truncation_psi=0.7, transform=transform)


def test_nvlabs_convention_for_a_quarter_turn():
    # NVlabs stylegan3 gen_images.py make_transform((0, 0), 90) puts [[c, s, tx], [-s, c, ty], [0, 0, 1]] =
    # [[0, 1, 0], [-1, 0, 0], [0, 0, 1]] in its m and copies inv(m) into synthesis.input.transform
    m = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(transform_matrix(rotate=90), torch.tensor(np.linalg.inv(m), dtype=torch.float32),
                               atol=1e-7, rtol=0)
    m = np.array([[1.0, 0.0, 0.25], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])  # make_transform((0.25, -0.5), 0)
    torch.testing.assert_close(transform_matrix((0.25, -0.5)), torch.tensor(np.linalg.inv(m), dtype=torch.float32))


def test_osc_over_loopback_slides_and_turns_the_picture(tmp_path):
    p = pipeline(tmp_path, SG3_T)
    still = frame(pipeline(tmp_path, SG3_T), 5.0)
    with Receiver(p.controls.bus, host="127.0.0.1", port=0) as rx:
        client = SimpleUDPClient("127.0.0.1", rx.port)
        client.send_message("/masq/style/translate_x", 0.5625)  # -1..1: 0.125 image widths right
        client.send_message("/masq/style/translate_y", 0.4375)  # 0.125 up
        client.send_message("/masq/style/rotate", 0.75)  # -180..180: a quarter turn counter-clockwise
        until(lambda: rx.stats.posted == 3, what="three faders")
    frame(p, 0.0)  # the faders apply here; smoothing (0.1 s) has long settled by t = 5
    moved = frame(p, 5.0)
    snap, _ = p.controls.at(5.0)
    assert (snap["style.translate_x"], snap["style.translate_y"], snap["style.rotate"]) == (0.125, -0.125, 90.0)
    expected = direct(p, 5.0, translate=(0.125, -0.125), rotate=90.0)
    torch.testing.assert_close(moved, expected, atol=1e-6, rtol=0)
    assert (moved - still).abs().max() > 0.03  # and the picture did move (a small random model: low contrast)
    torch.testing.assert_close(still, direct(p, 5.0), atol=1e-6, rtol=0)


def test_a_quarter_turn_from_the_show_turns_a_config_r_picture_counterclockwise(tmp_path):
    turned = pipeline(tmp_path, SG3_R, "[style]\nclass_label = 1\nrotate = 90.0\n")
    plain = pipeline(tmp_path, SG3_R, "[style]\nclass_label = 1\n")
    c = torch.tensor([[0.0, 1.0, 0.0]])
    image, still = frame(turned, 1.0), frame(plain, 1.0)
    torch.testing.assert_close(image, direct(turned, 1.0, c, rotate=90.0), atol=1e-6, rtol=0)
    # 1x1 convolutions and radial filters: a quarter turn is exact on the square grid; rot90 turns
    # counter-clockwise as displayed (row 0 at the top)
    assert (image - torch.rot90(still, 1, dims=(2, 3))).abs().max() < 1e-3  # measured 6e-8
    assert (image - torch.rot90(still, -1, dims=(2, 3))).abs().max() > 0.02  # clockwise would not match (0.036)
    assert (image - still).abs().max() > 0.02


def test_a_cue_and_a_binding_drive_the_params(tmp_path):
    p = pipeline(tmp_path, SG3_T, '[[cue]]\nnumber = 1\nset = { "style.rotate" = -45.0 }\n'
                                  '[[bind]]\nsource = "midi:cc/1/7"\ntarget = "style.translate_x"\ninput = [0, 127]\n')
    p.controls.bus.post("osc:/masq/scene/cue", 1, at=0.0)
    p.controls.bus.post("midi:cc/1/7", 127, at=0.0)  # the top: one image width right
    frame(p, 0.0)
    torch.testing.assert_close(frame(p, 5.0), direct(p, 5.0, translate=(1.0, 0.0), rotate=-45.0), atol=1e-6, rtol=0)


@pytest.mark.parametrize("text, key", [
    ("[style]\nrotate = 10.0\n", "style.rotate"),
    ("[style]\ntranslate_y = -0.5\n", "style.translate_y"),
    ('[[bind]]\nsource = "midi:cc/1/7"\ntarget = "style.translate_x"\n', "style.translate_x"),
    ('[[cue]]\nnumber = 2\nset = { "style.rotate" = 30.0 }\n', "style.rotate"),
])
@pytest.mark.parametrize("model", [SG2, DEFAULT_MODEL])
def test_models_that_cannot_move_refuse_what_the_show_sets(tmp_path, model, text, key):
    with pytest.raises(ShowError, match=rf"{key.replace('.', '[.]')}: this model \(\w+\) cannot move its picture; "
                                        "translate and rotate are StyleGAN3's") as e:
        pipeline(tmp_path, model, text)
    assert "\n" not in str(e.value)


def test_the_default_faders_are_no_ops_on_other_models(tmp_path):
    p, plain = pipeline(tmp_path, SG2), pipeline(tmp_path, SG2)
    for address in ("/masq/style/rotate", "/masq/style/translate_x", "/masq/style/translate_y"):
        p.controls.bus.post(f"osc:{address}", 0.9, at=0.0)
    frame(p, 0.0)
    assert p.controls.at(1.0)[0]["style.rotate"] > 100
    torch.testing.assert_close(frame(p, 1.0), frame(plain, 1.0), atol=0, rtol=0)


@pytest.mark.parametrize("text, message", [
    ("rotate = 181.0", r"show\.toml: style\.rotate must be -180\.\.180, got 181\.0"),
    ("translate_x = -1.5", r"show\.toml: style\.translate_x must be -1\.\.1, got -1\.5"),
    ("translate_y = nan", r"show\.toml: style\.translate_y must be a finite number, got nan"),
    ("rotate = inf", r"show\.toml: style\.rotate must be a finite number, got inf"),
    ('rotate = "90"', r"style\.rotate must be a number"),
])
def test_show_values_out_of_range_are_named(tmp_path, text, message):
    with pytest.raises(ShowError, match=message):
        load(tmp_path, SG3_T, f"[style]\n{text}\n")


def test_cue_values_out_of_range_are_named(tmp_path):
    with pytest.raises(ShowError, match=r"set\.style\.rotate must be a value in -180\.0\.\.180\.0, got 270"):
        load(tmp_path, SG3_T, '[[cue]]\nnumber = 1\nset = { "style.rotate" = 270.0 }\n')
