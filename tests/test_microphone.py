"""The live microphone path (sounddevice -> PortAudio -> ALSA), fed by a WAV instead of a sound card.

There is no sound card here, so ALSA's own `file` plugin stands in for one: a capture device whose
samples come from a raw file (an `.asoundrc` in a private HOME). Everything above ALSA is the real thing:
PortAudio opens the device, `AudioSource` reads blocks in its callback thread, analyses them and posts
`audio:*` to the bus. Runs in a subprocess, since ALSA reads its configuration once per process.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from .conftest import ROOT

sounddevice = pytest.importorskip("sounddevice", reason="the live extra (sounddevice) is not installed")

RATE = 44100

CHILD = textwrap.dedent("""
    import json, sys, time
    from engine.controls.audio import AudioSource
    from engine.controls.bus import Bus, Binding, Param
    from engine.controls.record import Recording
    bus = Bus()
    for name, trigger in (("level", False), ("onset", True), ("tempo", False)):
        bus.declare(Param(name, 0.0, 0.0, 1000.0, trigger=trigger))
        bus.bind(Binding(f"audio:{name}", name, (0.0, 1000.0)))
    bus.recording = Recording()
    posted, onsets = [], []  # every level and onset the microphone posts: a frame applies only the newest value
    # of a source, and the null device has no clock, so the whole file may arrive between two frames
    def observe(source, value):
        if source == "audio:level" and value:
            posted.append(value)
        elif source == "audio:onset" and value:
            onsets.append(value)
    bus.observer = observe
    mic = AudioSource(bus, "default")
    mic.start()
    start = time.monotonic()
    while time.monotonic() - start < 5.0:
        time.sleep(0.02)
        bus.snapshot(time.monotonic() - start)
    mic.stop()
    level = max(posted, default=0.0)
    print(json.dumps({"reason": mic.reason, "onsets": len(onsets), "max_level": level,
                      "blocks": mic.stats.reads,
                      "dropped": mic.dropped, "connects": mic.stats.connects}))
""")


def test_a_microphone_through_portaudio_and_alsa_posts_onsets_on_the_clicks(tmp_path):
    t = np.arange(RATE * 8) / RATE
    signal = np.zeros_like(t)
    for beat in np.arange(0.25, 8, 0.5):  # a kick every 0.5 s: 120 BPM
        i = int(beat * RATE)
        signal[i:i + 3000] += np.sin(2 * np.pi * 70 * t[:3000]) * np.exp(-np.arange(3000) / 500)
    (signal * 20000).astype("<i2").tofile(tmp_path / "mic.raw")
    (tmp_path / ".asoundrc").write_text(textwrap.dedent(f"""
        pcm.wavmic {{
          type file
          slave {{ pcm "null" }}
          file "/dev/null"
          infile "{tmp_path / 'mic.raw'}"
          format "raw"
        }}
        pcm.!default {{
          type plug
          slave {{ pcm "wavmic" format S16_LE rate {RATE} channels 1 }}
        }}
    """))
    env = {**os.environ, "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["connects"] >= 1 and result["max_level"] > 0.05, result
    # ALSA's null device has no clock, so the file arrives faster than real time and the callback queue
    # overflows (counted in `dropped`): onsets are fewer than the file's 16 kicks, but they do arrive
    assert 3 <= result["onsets"] <= 16 and result["blocks"] > 0, result
