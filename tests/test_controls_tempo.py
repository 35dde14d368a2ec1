"""Tempo: taps -> BPM (median, reset after a pause), beat phase and index as pure functions of show time, beat
triggers between frames, and Ableton Link where a binding is installed."""

import random

import pytest

from engine.controls.tempo import LinkClock, Tempo


def test_taps_give_the_median_interval_and_a_beat_on_the_last_tap():
    tempo = Tempo(bpm=90)
    assert tempo.tap(10.0) is None and tempo.bpm == 90  # one tap is not a tempo
    bpm = None
    for t in (10.5, 11.0, 11.62, 12.0, 12.5):  # one late tap: the median ignores it
        bpm = tempo.tap(t)
    assert bpm == pytest.approx(120) and tempo.bpm == pytest.approx(120)
    assert tempo.phase_at(12.5) == pytest.approx(0.0, abs=1e-9)
    assert tempo.phase_at(12.75) == pytest.approx(0.5)
    assert tempo.beat_index_at(13.0) == tempo.beat_index_at(12.5) + 1


def test_a_long_pause_starts_a_new_series():
    tempo = Tempo(reset_after=2.0)
    for t in (0.0, 0.5, 1.0, 1.5):
        tempo.tap(t)
    assert tempo.bpm == pytest.approx(120)
    assert tempo.tap(10.0) is None and tempo.bpm == pytest.approx(120)  # after 8.5 s: a new series, kept tempo
    assert tempo.tap(11.0) == pytest.approx(60)  # not the median with the old 0.5 s intervals
    assert tempo.phase_at(11.0) == pytest.approx(0.0, abs=1e-9)


def test_phase_and_beat_index_are_pure_functions_of_show_time():
    tempo = Tempo(bpm=120, downbeat=1.0, beats_per_bar=4)
    assert tempo.beat_index_at(1.0) == 0 and tempo.phase_at(1.0) == pytest.approx(0.0, abs=1e-9)
    assert tempo.beat_index_at(0.9) == -1 and tempo.phase_at(0.9) == pytest.approx(0.8)
    assert tempo.beat_index_at(3.24) == 4 and tempo.phase_at(3.25) == pytest.approx(0.5)
    assert tempo.bar_phase_at(2.0) == pytest.approx(0.5)
    ts = [i / 30 for i in range(300)]
    forward = [tempo.features_at(t, since=t - 1 / 30) for t in ts]
    shuffled = random.Random(3).sample(range(len(ts)), len(ts))
    assert all(tempo.features_at(ts[i], since=ts[i] - 1 / 30) == forward[i] for i in shuffled)
    # 10 s at 120 BPM: the beats at 0.0, 0.5, ... 9.5 (before the downbeat too) each fire in exactly one frame
    assert sum(f["tempo:beat"] for f in forward) == 20
    assert sum(f["tempo:downbeat"] for f in forward) == 5  # beats 0, 4, 8, 12, 16


def test_a_beat_fires_only_when_one_falls_between_frames():
    tempo = Tempo(bpm=60, downbeat=0.0)
    assert tempo.features_at(2.0)["tempo:beat"] == 1.0  # exactly on a beat
    assert tempo.features_at(2.01)["tempo:beat"] == 0.0
    assert tempo.features_at(2.01, since=1.99)["tempo:beat"] == 1.0
    assert tempo.features_at(2.5, since=2.01)["tempo:beat"] == 0.0
    assert tempo.features_at(2.5, since=2.5)["tempo:beat"] == 0.0


def test_bpm_is_kept_within_range():
    with pytest.raises(ValueError, match="bpm"):
        Tempo(bpm=0)
    tempo = Tempo()
    tempo.tap(0.0)
    tempo.tap(0.01)  # a double tap
    assert tempo.bpm == 400.0


def test_link_clock_reports_lost_or_a_session():
    clock = LinkClock(bpm=100)
    with clock:
        if not LinkClock.available():
            assert clock.state == "lost" and "aalink" in clock.reason and clock.now() is None
            return
        assert clock.state == "connected"
        now = clock.now()
        assert now["tempo:bpm"] == pytest.approx(100) and 0 <= now["tempo:phase"] < 1
    assert clock.state == "stopped" and clock.now() is None
