"""Soak the kiosk: run the supervisor and the real engine for N minutes, inject faults, report.

    .venv/bin/python installation/soak.py --minutes 10 [--every 30] [--size 320x180]

Every `--every` seconds one fault, in turn: kill -9 of the engine, a hang (SIGSTOP), an edit of the
show into invalid TOML (refused; the show must keep playing) and back, a staff-free restart by editing
the show validly. It prints each fault with the time to the next presented frame, and at the end the
restarts, the supervisor's memory (RSS) at the start and the end, and the engine's frame rate. Not part
of the test suite (tests/test_kiosk*.py are); starts its own Xvfb when there is no DISPLAY.
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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--every", type=float, default=30.0, help="seconds between faults")
    p.add_argument("--size", default="320x180", help="engine window size")
    args = p.parse_args()

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
        display = f":{200 + os.getpid() % 100}"
        xvfb = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        env["DISPLAY"] = display
        time.sleep(1)
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
