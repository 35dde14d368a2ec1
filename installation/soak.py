"""Soak the kiosk: run the supervisor and the real engine for N minutes, inject faults, report.

    .venv/bin/python installation/soak.py --minutes 10 [--every 30] [--size 320x180]

Every `--every` seconds one fault, in turn: kill -9 of the engine, a hang (SIGSTOP), an edit of the
show into invalid TOML (refused; the show must keep playing) and back, a staff-free restart by editing
the show validly. It prints each fault with the time to the next presented frame, and at the end the
restarts, the supervisor's memory (RSS) at the start and the end, and the engine's frame rate. Not part
of the test suite (tests/test_kiosk*.py are); starts its own Xvfb when there is no DISPLAY.

    .venv/bin/python installation/soak.py --accelerated 20000 [--size 320x180] [--show shows/default.toml]

Accelerated: the engine's headless lockstep run (`masquerade run --headless --frames N --heartbeat`), as
fast as the machine draws, so N frames are N / fps seconds of show time in much less wall time. It samples
the engine's heartbeat and memory (RSS) each second and prints the growth of both from the first quarter
after warm-up to the last quarter (the goal: memory growth under 1%, no frame-time drift).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def accelerated(frames: int, size: str = "320x180", show: Path = ROOT / "shows" / "default.toml",
                report=print) -> dict:
    """Run the engine headless for `frames` lockstep frames; its memory and frame time, early and late."""
    work = Path(tempfile.mkdtemp(prefix="kiosk-soak-fast-"))
    heartbeat = work / "heartbeat.json"
    engine = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", str(show), "--headless", "--frames",
                               str(frames), "--size", size, "--heartbeat", str(heartbeat), "--osc-port", "0"],
                              cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples = []  # (frames, ms per frame, RSS KiB)
    started, last, show_t = time.monotonic(), 0, 0.0
    while engine.poll() is None:
        time.sleep(0.25)
        try:
            beat = json.loads(heartbeat.read_text())
            rss = rss_kib(engine.pid)
        except (OSError, ValueError):
            continue
        if beat["frames"] != last and beat["fps"] > 0:
            last, show_t = beat["frames"], beat["t"]
            samples.append((beat["frames"], 1000 / beat["fps"], rss))
            if len(samples) % 20 == 0:
                report(f"  frame {beat['frames']:6d}  t={beat['t']:7.1f} s  {1000 / beat['fps']:5.2f} ms/frame  "
                       f"RSS {rss / 1024:.1f} MiB")
    wall = time.monotonic() - started
    err = engine.stderr.read()
    if engine.returncode != 0 or len(samples) < 8:
        raise RuntimeError(f"the engine exited with status {engine.returncode} after {len(samples)} samples:\n"
                           f"{err[-2000:]}")
    body = [s for s in samples if s[0] > 0.1 * frames]  # after warm-up
    q = max(1, len(body) // 4)
    early, late = body[:q], body[-q:]

    def mean(rows, i):
        return sum(r[i] for r in rows) / len(rows)

    result = {"frames": frames, "show_seconds": show_t, "wall_seconds": wall, "samples": len(samples),
              "rss_early_kib": mean(early, 2), "rss_late_kib": mean(late, 2), "ms_early": mean(early, 1),
              "ms_late": mean(late, 1)}
    result["rss_growth_pct"] = 100 * (result["rss_late_kib"] / result["rss_early_kib"] - 1)
    result["ms_growth_pct"] = 100 * (result["ms_late"] / result["ms_early"] - 1)
    shutil.rmtree(work, ignore_errors=True)
    return result


def print_accelerated(r: dict) -> None:
    print(f"{r['frames']} frames ({r['show_seconds']:.0f} s of show time) in {r['wall_seconds']:.0f} s wall, "
          f"{r['samples']} samples")
    print(f"engine RSS (first vs last quarter after warm-up): {r['rss_early_kib'] / 1024:.1f} MiB -> "
          f"{r['rss_late_kib'] / 1024:.1f} MiB ({r['rss_growth_pct']:+.2f}%)")
    print(f"frame time: {r['ms_early']:.2f} ms -> {r['ms_late']:.2f} ms ({r['ms_growth_pct']:+.1f}%)")


def start_xvfb(env: dict, base: int) -> subprocess.Popen:
    """A virtual X server for the engine's window, on display `base + pid % 100`, set in `env`."""
    display = f":{base + os.getpid() % 100}"
    xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env["DISPLAY"] = display
    time.sleep(1)
    return xvfb


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--every", type=float, default=30.0, help="seconds between faults")
    p.add_argument("--size", default="320x180", help="engine window size")
    p.add_argument("--accelerated", type=int, metavar="FRAMES",
                   help="instead: the headless engine for FRAMES lockstep frames; memory and frame-time growth")
    p.add_argument("--show", type=Path, default=ROOT / "shows" / "default.toml", help="with --accelerated")
    args = p.parse_args()
    if args.accelerated:
        r = accelerated(args.accelerated, args.size, args.show.resolve())
        print_accelerated(r)
        return 0 if r["rss_growth_pct"] < 1.0 else 1

    work = Path(tempfile.mkdtemp(prefix="kiosk-soak-"))
    show = work / "soak.toml"
    good = (ROOT / "shows" / "default.toml").read_text()
    show.write_text(good)
    (work / "site.toml").write_text(f"""
name = "Soak"
[engine]
args = ["--size", "{args.size}"]
[watchdog]
heartbeat_timeout = 5
[status]
enabled = false
[[playlist]]
show = "{show}"
""")
    env, xvfb = dict(os.environ), None
    if not env.get("DISPLAY"):
        if shutil.which("Xvfb") is None:
            print("soak: no DISPLAY and no Xvfb", file=sys.stderr)
            return 2
        xvfb = start_xvfb(env, 200)
    kiosk = subprocess.Popen([sys.executable, "-m", "installation.kiosk", str(work / "site.toml")], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def state() -> dict:
        try:
            return json.loads((work / "state" / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def playing(not_pid=None, timeout=120.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = state()
            child, beat = s.get("child") or {}, s.get("heartbeat") or {}
            if child.get("running") and beat.get("pid") == child.get("pid") != not_pid and s.get("mode") == "playing":
                return s
            time.sleep(0.05)
        return None

    faults, results = ["kill -9", "hang", "invalid edit", "valid edit"], []
    try:
        s = playing()
        if s is None:
            print("soak: the engine never played", file=sys.stderr)
            return 1
        rss_start, start, n = rss_kib(kiosk.pid), time.monotonic(), 0
        fps = []
        while time.monotonic() - start < args.minutes * 60:
            time.sleep(args.every)
            s = state()
            pid, fault = s["child"]["pid"], faults[n % len(faults)]
            fps.append((s.get("heartbeat") or {}).get("fps", 0))
            t0 = time.monotonic()
            if fault == "kill -9":
                os.kill(pid, signal.SIGKILL)
            elif fault == "hang":
                os.kill(pid, signal.SIGSTOP)
            elif fault == "invalid edit":
                show.write_text(good.replace("[walk]", "[walk"))
            else:
                show.write_text(good.replace("seed = 2026", f"seed = {2026 + n}"))
            if fault == "invalid edit":
                time.sleep(8)  # the edit is refused: the same engine must still be playing
                s = state()
                ok = s["child"]["pid"] == pid and any("refused" in e["message"] for e in s["errors"][-3:])
                results.append((fault, ok, None))
                show.write_text(good)  # put it back (valid: a reload)
                playing(not_pid=pid)
            else:
                back = playing(not_pid=pid)
                results.append((fault, back is not None, time.monotonic() - t0 if back else None))
            print(f"{fault:13s} {'ok' if results[-1][1] else 'FAILED'}"
                  + (f"  back in {results[-1][2]:.1f} s" if results[-1][2] else ""), flush=True)
            n += 1
        s = state()
        rss_end = rss_kib(kiosk.pid)
        print(f"\n{n} faults in {(time.monotonic() - start) / 60:.1f} min: "
              f"{sum(ok for _, ok, _ in results)} recovered, restarts {s['restarts']}")
        times = [t for _, _, t in results if t]
        if times:
            print(f"time to the next frame: mean {sum(times) / len(times):.1f} s, worst {max(times):.1f} s")
        print(f"supervisor RSS {rss_start} KiB -> {rss_end} KiB ({100 * (rss_end - rss_start) / rss_start:+.1f}%)")
        if fps:
            print(f"engine fps before each fault: first {fps[0]:.1f}, last {fps[-1]:.1f}")
        return 0 if all(ok for _, ok, _ in results) else 1
    finally:
        kiosk.send_signal(signal.SIGTERM)
        kiosk.wait(30)
        if xvfb is not None:
            xvfb.terminate()
            xvfb.wait(10)
        print(f"logs and state: {work}")


if __name__ == "__main__":
    sys.exit(main())
