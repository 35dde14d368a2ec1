"""OSC-to-photon latency: from a UDP packet leaving the sender to the first presented frame that shows it.

    .venv/bin/python bench/latency.py [--events 40] [--size 512] [--device auto] [--display-hz 60]

The live loop of `masquerade run` (realtime clock, generator thread one frame ahead, GL compositor,
present) runs on an offscreen EGL surface paced at the display rate. A sender thread sends
`/masq/keyframe/next` over real UDP at random moments; the walk is slowed to a crawl, so a keyframe cut is
the only thing that changes the picture, and each presented frame is read back and compared with the one
before. Latency = the present time of the first changed frame minus the send time.

Printed: median and 95th percentile in ms and in display frames, the generator's own time per frame,
and the ratio the goal is stated in: latency minus the generator's time, in display frames (goal: <= 2;
the frame being generated when the packet lands cannot show it, and the next one needs a generator's time).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pythonosc.udp_client import SimpleUDPClient  # noqa: E402

from engine import show as shows  # noqa: E402
from engine.clock import Realtime  # noqa: E402
from engine.controls.state import ControlState  # noqa: E402
from engine.loop import Offscreen, _realtime_frames, make_compositor, start_osc  # noqa: E402
from engine.pipeline import Pipeline, make_bus  # noqa: E402
from engine.producer import Producer  # noqa: E402

SHOW = """name = "latency bench"
[model]
path = "{model}"
[walk]
seconds_per_keyframe = 100000.0
[osc]
host = "127.0.0.1"
"""


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=40)
    ap.add_argument("--size", type=int, default=512, help="output side in pixels (square)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--display-hz", type=float, default=60.0)
    ap.add_argument("--model", default=str(ROOT / "assets" / "models" / "emoji64.safetensors"))
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "latency.toml"
        path.write_text(SHOW.format(model=args.model))
        show = shows.load(path)
    controls = ControlState(make_bus(show))
    pipeline = Pipeline(show, args.device, controls)
    surface, clock = Offscreen((args.size, args.size)), Realtime()
    producer = Producer(pipeline)
    receiver = start_osc(show, controls.bus, 0, clock.time)
    compositor = make_compositor(surface.ctx, show, surface.size, pipeline)
    period = 1.0 / args.display_hz

    sends: list[float] = []
    done = threading.Event()

    def sender():
        client = SimpleUDPClient("127.0.0.1", receiver.port)
        rng = random.Random(0)
        time.sleep(1.0)  # let the loop warm up
        for _ in range(args.events):
            sends.append(time.perf_counter())
            client.send_message("/masq/keyframe/next", 1)
            time.sleep(rng.uniform(0.4, 0.8))
        done.set()

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    latencies, previous, next_vsync = [], None, time.perf_counter()
    try:
        while not done.is_set() or len(latencies) < len(sends):
            tick = clock.tick()
            older, newer, mix = _realtime_frames(producer, tick)
            compositor.draw(older, newer, mix)
            surface.present(compositor.fbo)
            next_vsync += period
            time.sleep(max(0.0, next_vsync - time.perf_counter()))  # a display's vsync
            presented = time.perf_counter()
            pixels = np.asarray(compositor.read(), dtype=np.int16)
            if previous is not None and np.abs(pixels - previous).mean() > 2.0:
                waiting = [s for s in sends[len(latencies):] if s <= presented]
                if waiting:  # the first changed frame after a send answers that send
                    latencies.append(presented - waiting[0])
                    sends[len(latencies) - 1] = waiting[0]
            previous = pixels
            if done.is_set() and time.perf_counter() - sends[-1] > 5:
                break  # a lost answer: stop rather than wait forever
    finally:
        producer.close()
        receiver.stop()
        surface.close()

    gen_ms = producer.seconds_per_frame * 1000
    ms = sorted(v * 1000 for v in latencies)
    p50, p95 = statistics.median(ms), ms[min(len(ms) - 1, int(0.95 * len(ms)))]
    frame_ms = period * 1000
    print(f"# OSC -> presented frame, {len(ms)}/{args.events} events, {args.size}x{args.size}, "
          f"{pipeline.device}, display {args.display_hz:g} Hz, {time.strftime('%Y-%m-%d')}")
    print(f"generator: {gen_ms:.1f} ms/frame (walk + model + filters)")
    print(f"latency:   median {p50:.1f} ms ({p50 / frame_ms:.2f} display frames), "
          f"p95 {p95:.1f} ms ({p95 / frame_ms:.2f} frames)")
    print(f"beyond the generator's own time: median {(p50 - gen_ms) / frame_ms:.2f} display frames, "
          f"p95 {(p95 - gen_ms) / frame_ms:.2f} (goal: <= 2)")


if __name__ == "__main__":
    main()
