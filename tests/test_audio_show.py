"""Music drives a show: an audio file's features steer the walk frame-exact, and the render carries the
soundtrack (a music video from one command)."""

import wave

import av
import numpy as np

from engine.sinks.video import read_frames

from .conftest import DEFAULT_MODEL, masquerade


def clicks_wav(path, seconds=2.0, bpm=120, rate=22050):
    """Silence with a loud click on every beat, then a loud sine for the last half second."""
    t = np.arange(int(seconds * rate)) / rate
    signal = np.zeros_like(t)
    for beat in np.arange(0, seconds, 60 / bpm):
        i = int(beat * rate)
        signal[i:i + 200] = np.hanning(200) * 0.9
    signal[t > seconds - 0.5] = 0.8 * np.sin(2 * np.pi * 220 * t[t > seconds - 0.5])
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((signal * 32767).astype(np.int16).tobytes())
    return path


def show_with(tmp_path, audio: str, name: str):
    path = tmp_path / name
    path.write_text(f'[model]\npath = "{DEFAULT_MODEL}"\n[walk]\nseconds_per_keyframe = 1.0\n'
                    f'[output]\nsize = [128, 128]\nfps = 15\n{audio}')
    return path


BIND = ('[[bind]]\nsource = "audio:level"\ntarget = "walk.speed"\ncurve = "exp"\n'
        'output = [0.25, 8.0]\n')


def test_music_video_from_one_command(tmp_path):
    wav = clicks_wav(tmp_path / "clicks.wav")
    driven = show_with(tmp_path, f'[audio]\nsource = "{wav}"\n{BIND}', "driven.toml")
    out = tmp_path / "video.mp4"
    r = masquerade("render", driven, "-o", out, "--seconds", 2)
    assert r.returncode == 0, r.stderr
    with av.open(str(out)) as c:
        assert len(c.streams.video) == 1 and len(c.streams.audio) == 1
        audio = c.streams.audio[0]
        assert audio.codec_context.name == "aac"
        samples = sum(f.samples for f in c.decode(audio))
    assert abs(samples / audio.rate - 2.0) < 0.1  # the soundtrack lasts as long as the picture
    frames = read_frames(out)
    assert len(frames) == 30

    again = tmp_path / "again.mp4"
    assert masquerade("render", driven, "-o", again, "--seconds", 2).returncode == 0
    for a, b in zip(frames, read_frames(again), strict=True):
        assert np.array_equal(a, b)  # driven by music, still frame-exact

    silent = tmp_path / "silent.mp4"
    plain = show_with(tmp_path, "", "plain.toml")
    assert masquerade("render", plain, "-o", silent, "--seconds", 2).returncode == 0
    differ = [np.abs(a.astype(int) - b).mean() for a, b in zip(frames, read_frames(silent))]
    # the same start (up to H.264's noise), then the music's own pace: slow in the quiet, fast in the loud end
    assert differ[0] < 3 and max(differ) > 10 and differ[-1] > 10


def test_missing_audio_file_is_named(tmp_path):
    show = show_with(tmp_path, '[audio]\nsource = "gone.wav"\n', "bad.toml")
    r = masquerade("render", show, "-o", tmp_path / "x.mp4", "--seconds", 1)
    assert r.returncode == 2 and "gone.wav: no such audio file" in r.stderr
