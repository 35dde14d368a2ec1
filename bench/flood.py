"""An OSC flood against the live loop: frame rate, control-stage time and memory before, during and after.

    .venv/bin/python bench/flood.py [--seconds 5] [--senders 256] [--per-bundle 32] [--size 256] [--device auto]

The live loop of `masquerade run` (realtime clock, generator thread, GL compositor, present paced at the
display rate) runs headless on an offscreen EGL surface with the small emoji model, as bench/latency.py
does. After `--seconds` of calm, a separate flooder process sends as fast as it can from `--senders`
loopback addresses (127.0.1.x, 127.0.2.x, ...: each its own sender with its own rate limit), bundles of
`--per-bundle` messages over 256 OSC addresses: bound faders, unbound addresses, and one bundle in four
time-tagged up to 60 s ahead. All along, a second controller on another address (127.0.0.2) sends one
cue a quarter second (/masq/scene/cue 1, 2, 3, ...); every cue must reach a frame. Then `--seconds` of calm
again.

Printed per phase: generated frames per second, presented frames per second, the snapshot (the control
stage's `ControlState.at`) per generated frame, mean, 99th percentile and worst, the whole control stage
as `--stats` shows it (smoothed, with cues), and the process's resident memory; then the goals:
fps during >= 80% of before, control stage < 1 ms, no cue lost, memory growth < 20 MB.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHOW = """name = "flood bench"
[model]
path = "{model}"
[osc]
host = "127.0.0.1"
"""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def flooder(port: int, senders: int, per_bundle: int, seconds: float) -> None:
    """The flooding process: round-robin over `senders` source addresses, as fast as it can."""
    import socket

    from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
    from pythonosc.osc_message_builder import OscMessageBuilder

    rng = random.Random(1)
    faders = ["/masq/walk/energy", "/masq/walk/truncation", "/masq/style/mix", "/masq/walk/speed",
              "/masq/output/trail"]
    socks = []
    for i in range(senders):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{1 + i // 250}.{1 + i % 250}", 0))
        socks.append(s)
    sent = datagrams = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for s in socks:
            ahead = rng.random() < 0.25
            b = OscBundleBuilder(time.time() + rng.uniform(1, 59) if ahead else IMMEDIATELY)
            for _ in range(per_bundle):
                n = rng.randrange(256)
                m = OscMessageBuilder(faders[n % len(faders)] if n < 64 else f"/flood/{n}")
                m.add_arg(rng.random())
                b.add_content(m.build())
            try:
                s.sendto(b.build().dgram, ("127.0.0.1", port))
                datagrams += 1
                sent += per_bundle
            except OSError:  # the kernel's buffer is full: try the next
                pass
    print(f"{datagrams} {sent}", flush=True)


class Phase:
    def __init__(self, name):
        self.name, self.control_ms, self.presented, self.started = name, [], 0, time.perf_counter()
        self.rss_start = rss_mb()

    def summary(self, stage_ms: dict) -> dict:
        seconds = time.perf_counter() - self.started
        c = self.control_ms or [0.0]
        return {"phase": self.name, "gen_fps": len(self.control_ms) / seconds, "fps": self.presented / seconds,
                "control_mean": statistics.mean(c), "control_max": max(c),
                "control_p99": sorted(c)[min(len(c) - 1, int(0.99 * len(c)))], "rss": rss_mb(),
                "stage": stage_ms.get("control", 0.0)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    ap.add_argument("--senders", type=int, default=256)
    ap.add_argument("--per-bundle", type=int, default=32)
    ap.add_argument("--size", type=int, default=256, help="output side in pixels (square)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--display-hz", type=float, default=60.0)
    ap.add_argument("--model", default=str(ROOT / "assets" / "models" / "emoji64.safetensors"))
    ap.add_argument("--flooder", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.flooder:
        return flooder(args.flooder, args.senders, args.per_bundle, args.seconds)

    from pythonosc.udp_client import SimpleUDPClient

    from engine import show as shows
    from engine.clock import Realtime
    from engine.controls.state import ControlState
    from engine.loop import Offscreen, _realtime_frames, make_compositor, start_osc
    from engine.pipeline import Pipeline, make_bus
    from engine.producer import Producer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flood.toml"
        path.write_text(SHOW.format(model=args.model))
        show = shows.load(path)
    controls = ControlState(make_bus(show))
    pipeline = Pipeline(show, args.device, controls)
    surface, clock = Offscreen((args.size, args.size)), Realtime()
    producer = Producer(pipeline)
    receiver = start_osc(show, controls.bus, 0, clock.time)
    compositor = make_compositor(surface.ctx, show, surface.size, pipeline)
    period = 1.0 / args.display_hz

    phases: list[Phase] = [Phase("warm-up")]
    cues_seen: set[int] = set()
    at = controls.at

    def timed_at(t):  # the control stage's snapshot, per generated frame
        t0 = time.perf_counter()
        snap, walk_time = at(t)
        phases[-1].control_ms.append((time.perf_counter() - t0) * 1000)
        return snap, walk_time

    snapshot = controls.bus.snapshot

    def seen(t):  # every snapshot, the cue stage's second one included
        snap = snapshot(t)
        if snap.fired("scene.cue"):
            cues_seen.add(int(snap["scene.cue"]))
        return snap

    controls.at, controls.bus.snapshot = timed_at, seen
    cues_sent: list[int] = []
    stop = threading.Event()

    def controller():  # the performer's desk, on another address
        import socket

        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.2", 0))
        client = SimpleUDPClient("127.0.0.1", receiver.port)
        client._sock.close()
        client._sock = sock
        n = 0
        while not stop.wait(0.25):
            n = n % 999 + 1
            client.send_message("/masq/scene/cue", n)
            cues_sent.append(n)

    desk = threading.Thread(target=controller, daemon=True)
    flood = None
    results = []
    schedule = [("before", 2.0), ("during", 2.0 + args.seconds), ("after", 2.0 + 2 * args.seconds),
                (None, 2.0 + 3 * args.seconds)]
    started, next_vsync = time.perf_counter(), time.perf_counter()
    try:
        while schedule:
            elapsed = time.perf_counter() - started
            if elapsed >= schedule[0][1]:
                name, _ = schedule.pop(0)
                if phases[-1].name in ("before", "during", "after"):
                    results.append(phases[-1].summary(pipeline.times.mean_ms))
                if name is None:  # the desk stops; a second more for its last cue to reach a frame
                    stop.set()
                    schedule.append(("end", elapsed + 1.0))
                    name = "tail"
                if name == "end":
                    break
                phases.append(Phase(name))
                if name == "before":
                    desk.start()
                if name == "during":
                    flood = subprocess.Popen([sys.executable, __file__, "--flooder", str(receiver.port),
                                              "--senders", str(args.senders), "--per-bundle", str(args.per_bundle),
                                              "--seconds", str(args.seconds)], stdout=subprocess.PIPE, text=True)
            tick = clock.tick()
            older, newer, mix = _realtime_frames(producer, tick)
            compositor.draw(older, newer, mix)
            surface.present(compositor.fbo)
            phases[-1].presented += 1
            next_vsync = max(next_vsync + period, time.perf_counter() - period)
            time.sleep(max(0.0, next_vsync - time.perf_counter()))  # a display's vsync
        stop.set()
        desk.join(1)
        flooded = flood.communicate(timeout=30)[0].split() if flood else ["0", "0"]
    finally:
        stop.set()
        if flood is not None and flood.poll() is None:
            flood.kill()
        producer.close()
        receiver.stop()
        surface.close()

    st, bus = receiver.stats, controls.bus.stats
    print(f"# OSC flood, {args.senders} senders x bundles of {args.per_bundle}, {args.size}x{args.size}, "
          f"{pipeline.device}, display {args.display_hz:g} Hz, {time.strftime('%Y-%m-%d')}")
    print(f"{'phase':8} {'gen fps':>8} {'shown fps':>9} {'control ms':>11} {'p99':>6} {'worst':>6} "
          f"{'stage ms':>8} {'RSS MB':>7}")
    for r in results:
        print(f"{r['phase']:8} {r['gen_fps']:8.1f} {r['fps']:9.1f} {r['control_mean']:11.3f} "
              f"{r['control_p99']:6.3f} {r['control_max']:6.2f} {r['stage']:8.3f} {r['rss']:7.1f}")
    print(f"flood: {flooded[0]} datagrams, {flooded[1]} messages sent; receiver read {st.packets} datagrams, "
          f"posted {st.posted}, rate-limited {st.rate_limited}, scheduled {st.scheduled}, "
          f"schedule_full {st.schedule_full}; bus applied {bus.applied}, coalesced {bus.coalesced}, "
          f"unbound {bus.unbound}, overflow {bus.overflow}")
    before, during, after = results
    lost = [c for c in cues_sent if c not in cues_seen]
    growth = max(during["rss"], after["rss"]) - before["rss"]
    print(f"fps during / before: {during['gen_fps'] / max(before['gen_fps'], 1e-9):.2f} (goal >= 0.80); "
          f"control stage during: mean {during['control_mean']:.3f} ms, p99 {during['control_p99']:.3f} ms "
          f"(goal < 1 ms); cues {len(cues_sent) - len(lost)}/{len(cues_sent)} arrived (goal: all); "
          f"memory growth {growth:.1f} MB (goal < 20 MB)" + (f"; lost cues {lost}" if lost else ""))


if __name__ == "__main__":
    main()
