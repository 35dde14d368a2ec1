"""Audio analysis on synthesised WAVs: onsets on clicks, tempo, bands, silence, order independence, the file
readers, and the live source posting to a real bus; a live input without a device is lost, not raised."""

import time
import wave

import numpy as np
import pytest

from engine.controls import audio
from engine.controls.audio import AnalyserConfig, AudioAnalysis, AudioSource, read_audio_file
from engine.controls.bus import Binding, Bus, Param, declare_all
from tests.conftest import until

SR = 22050
HOP = AnalyserConfig().hop / SR




def clicks(bpm=120.0, seconds=8.0, first=0.5):
    """Short 1.5 kHz bursts at `bpm` on silence, and their times."""
    x = np.zeros(int(SR * seconds), np.float32)
    t = np.arange(int(0.01 * SR)) / SR
    burst = (0.8 * np.exp(-t / 0.002) * np.sin(2 * np.pi * 1500 * t)).astype(np.float32)
    times = np.arange(first, seconds - 0.05, 60.0 / bpm)
    for c in times:
        i = int(round(c * SR))
        x[i:i + len(burst)] += burst[:len(x) - i]
    return x, times


def sine(freq, seconds=1.0, amplitude=0.5):
    return (amplitude * np.sin(2 * np.pi * freq * np.arange(int(SR * seconds)) / SR)).astype(np.float32)


def write_wav(path, samples, sr=SR, channels=1):
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    if channels == 2:
        pcm = np.repeat(pcm[:, None], 2, axis=1)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(2)
        f.setframerate(sr)
        f.writeframes(pcm.tobytes())
    return path


@pytest.fixture(scope="module")
def click_analysis():
    x, times = clicks()
    return AudioAnalysis.from_samples(x, SR), times


def test_onsets_land_on_the_clicks_within_one_hop(click_analysis):
    analysis, times = click_analysis
    onsets = analysis.event_times("audio:onset")
    assert len(onsets) == len(times), (onsets, times)
    assert np.all(np.abs(onsets - times) <= HOP + 1e-9), onsets - times


def test_tempo_of_clicks_at_120_bpm(click_analysis):
    analysis, _ = click_analysis
    assert analysis.features_at(1.0)["audio:tempo"] == 0.0  # too little audio yet
    assert analysis.features_at(7.5)["audio:tempo"] == pytest.approx(120, abs=3)


def test_beats_follow_the_clicks_once_the_tempo_is_known(click_analysis):
    analysis, times = click_analysis
    beats = analysis.event_times("audio:beat")
    assert len(beats) >= 8
    assert np.all(np.abs(np.diff(beats) - 0.5) < 2 * HOP), np.diff(beats)
    nearest = np.abs(beats[:, None] - times[None, :]).min(axis=1)
    assert np.all(nearest <= HOP + 1e-9), nearest


@pytest.mark.parametrize("freq, loud, quiet", [(100, "audio:low", "audio:high"), (5000, "audio:high", "audio:low")])
def test_bands_follow_the_pitch(freq, loud, quiet):
    f = AudioAnalysis.from_samples(sine(freq), SR).features_at(0.5)
    assert f[loud] > 0.8 and f[quiet] < 0.1 and f["audio:mid"] < 0.3, f
    assert f["audio:level"] == pytest.approx(1 + 20 * np.log10(0.5) / 60, abs=0.03)  # -6 dB on a 60 dB scale


def test_silence_is_level_zero_and_no_onsets():
    a = AudioAnalysis.from_samples(np.zeros(SR, np.float32), SR)
    assert a.values["audio:level"].max() == 0.0 and not a.values["audio:onset"].any()
    quiet = AudioAnalysis.from_samples(sine(440, amplitude=0.01), SR).features_at(0.5)["audio:level"]
    assert quiet == pytest.approx(1 + (20 * np.log10(0.01)) / 60, abs=0.03)  # -40 dB -> 1/3


def test_features_at_is_a_pure_function_of_time(click_analysis):
    analysis, _ = click_analysis
    ts = np.arange(0, 8, 1 / 30)
    forward = [analysis.features_at(t, since=t - 1 / 30) for t in ts]
    order = np.random.default_rng(1).permutation(len(ts))
    shuffled = {i: analysis.features_at(ts[i], since=ts[i] - 1 / 30) for i in order}
    assert all(forward[i] == shuffled[i] for i in range(len(ts)))
    # at 30 fps every onset fires in exactly one rendered frame
    assert sum(f["audio:onset"] for f in forward) == len(analysis.event_times("audio:onset"))
    assert analysis.features_at(-1.0) == dict.fromkeys(analysis.values, 0.0)


def test_the_wav_reader_mixes_to_mono_and_pyav_reads_other_formats(tmp_path):
    x = sine(440, 0.25)
    samples, sr = read_audio_file(write_wav(tmp_path / "stereo.wav", x, channels=2))
    assert sr == SR and samples.shape == x.shape and np.abs(samples - x).max() < 1e-3
    import av

    path = tmp_path / "tone.flac"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("flac", rate=SR, layout="mono")
        frame = av.AudioFrame.from_ndarray((x * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
        frame.sample_rate = SR
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    samples, sr = read_audio_file(path)
    assert sr == SR and len(samples) == len(x) and np.abs(samples - x).max() < 1e-3


def test_a_wav_file_plays_live_into_a_real_bus(tmp_path):
    x, times = clicks(seconds=1.6, first=0.2)
    path = write_wav(tmp_path / "clicks.wav", x)
    bus = declare_all(Bus(), [Param("flash", trigger=True), Param("glow")],
                      [Binding("audio:onset", "flash"), Binding("audio:level", "glow")])
    fired, levels = 0, []
    src = AudioSource(bus, path, decay=0.2, backoff=(5.0, 5.0))
    with src:
        deadline = time.monotonic() + 6.0
        while src.state != "lost" and time.monotonic() < deadline:
            snap = bus.snapshot(time.monotonic())
            fired += "flash" in snap.triggers
            levels.append(snap["glow"])
            time.sleep(0.01)
        assert src.state == "lost" and src.reason == "end of file"
        until(lambda: bus.snapshot(time.monotonic())["glow"] == 0.0 and bus.snapshot(time.monotonic())
              .held_by["glow"] is None, what="the level to ease to rest and be released")
    assert fired == len(times), (fired, times)
    assert max(levels) > 0.5
    assert src.stats.errors == 0 and src.stats.connects == 1


def test_a_live_input_without_a_device_is_lost_not_raised(monkeypatch):
    src = AudioSource(Bus(), None, backoff=(0.05, 0.1))
    if audio.sounddevice is None:
        assert "PortAudio" in audio.SOUNDDEVICE_MISSING
    else:  # no sound card here: PortAudio finds no input; force that where there is one
        monkeypatch.setattr(audio.sounddevice, "query_devices", lambda *a, **k: (_ for _ in ()).throw(
            ValueError("No input device matching None")))
    with src:
        until(lambda: src.stats.attempts >= 2, what="two attempts")
        assert src.state in ("lost", "reconnecting") and src.reason
    assert src.stats.connects == 0 and src.stats.errors == 0
