"""A camera in a show: a video file stands in for it through the same code path; its features reach
the control state of the running show, and a camera that is not there never stops the show."""

import json

from .conftest import DEFAULT_MODEL, masquerade
from .test_controls_camera import square_frames, write_video


def show_with(tmp_path, camera: str):
    path = tmp_path / "show.toml"
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[output]\nsize = [64, 64]\n[camera]\n{camera}\n'
                    '[[bind]]\nsource = "camera:motion"\ntarget = "walk.energy"\n')
    return path


def test_camera_features_reach_the_running_show(tmp_path):
    video = tmp_path / "visitor.mp4"
    write_video(video, square_frames(60, step=4))
    show = show_with(tmp_path, f'source = "{video.name}"\nloop = true\n')
    record = tmp_path / "set.jsonl"
    r = masquerade("run", show, "--headless", "--frames", 300, "--osc-port", 0, "--record", record)
    assert r.returncode == 0, r.stderr
    motion = [json.loads(line) for line in record.read_text().splitlines() if '"camera:motion"' in line]
    assert motion, "no camera:motion event reached the show's control state"
    assert max(e["value"] for e in motion) > 0.1  # the moving square was seen moving


def test_missing_camera_never_stops_the_show(tmp_path):
    show = show_with(tmp_path, 'source = "99"\n')  # no such device
    r = masquerade("run", show, "--headless", "--frames", 20, "--osc-port", 0)
    assert r.returncode == 0, r.stderr
    assert "camera lost" in r.stderr
