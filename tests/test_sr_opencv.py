"""OpenCV dnn_superres models as a filter: they upscale where opencv-contrib is installed, and say what
to install where it is not."""

from pathlib import Path

import cv2
import pytest
import torch
import torch.nn.functional as F

from engine import filters
from engine.filters.sr_opencv import OpenCVSuperRes, OpenCVSuperResError, model_from_name

WEIGHTS = Path(__file__).resolve().parent.parent.parent / "shared" / "fixtures" / "weights"
HAS_DNN_SUPERRES = hasattr(cv2, "dnn_superres")
needs_contrib = pytest.mark.skipif(
    not HAS_DNN_SUPERRES, reason="cv2.dnn_superres missing: it comes with opencv-contrib-python(-headless), "
                                 "which conflicts with the opencv-python-headless Masquerade installs")


def test_model_is_read_from_opencvs_file_names():
    assert model_from_name("ESPCN_x4.pb") == ("espcn", 4)
    assert model_from_name("models/FSRCNN-small_x3.pb") == ("fsrcnn", 3)
    assert model_from_name("LapSRN_x8.pb") == ("lapsrn", 8)
    with pytest.raises(OpenCVSuperResError, match="mystery.pb: cannot tell the model"):
        model_from_name("mystery.pb")


def test_registered_as_a_filter_with_the_contract():
    cls = filters.get("opencv-superres")
    assert cls is OpenCVSuperRes and cls.controls == {}
    assert "opencv-superres" not in filters.names("superres-*")  # not a network superres.load_sr builds


@pytest.mark.skipif(HAS_DNN_SUPERRES, reason="this cv2 has dnn_superres")
def test_without_contrib_the_error_says_what_to_install():
    with pytest.raises(OpenCVSuperResError, match=r"cv2\.dnn_superres.*pip install opencv-contrib-python-headless"):
        filters.create("opencv-superres", path=WEIGHTS / "ESPCN_x4.pb")


@needs_contrib
@pytest.mark.parametrize("name, scale", [("ESPCN_x4.pb", 4), ("FSRCNN_x4.pb", 4), ("LapSRN_x2.pb", 2)])
def test_models_upscale_a_picture(name, scale):
    if not (WEIGHTS / name).is_file():
        pytest.skip(f"{WEIGHTS / name} not found")
    module = OpenCVSuperRes(WEIGHTS / name)
    assert module.scale == scale
    coarse = torch.rand(1, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    x = F.interpolate(coarse, size=(24, 32), mode="bicubic", align_corners=False).clamp(0, 1)
    y = module(x)
    assert y.shape == (1, 3, 24 * scale, 32 * scale) and 0 <= y.min() and y.max() <= 1
    # the same picture, larger: shrunk back it follows the input closely (and the channels are not swapped)
    back = F.avg_pool2d(y, scale)
    assert (back - x).abs().mean() < 0.03


@needs_contrib
def test_unreadable_model_is_named(tmp_path):
    bad = tmp_path / "ESPCN_x4.pb"
    bad.write_bytes(b"not a graph")
    with pytest.raises(OpenCVSuperResError, match="ESPCN_x4.pb: OpenCV cannot read it"):
        OpenCVSuperRes(bad)
