"""The supervisor: one engine child process at a time, kept alive.

Each loop turn (every `POLL` seconds) it: applies staff commands; reloads a changed site or show file
(validated first, in the background: a bad edit is refused, logged, and the running show goes on);
follows opening hours and the playlist; checks the child (exited? no new frame for `heartbeat_timeout`?),
kills and restarts it with exponential back-off; after `failures_before_safe` failures in a row plays the
safe show; writes its state file atomically; pings systemd. The engine proves it is alive by rewriting its
heartbeat file (`masquerade run --heartbeat PATH`) with a growing frame count; the heartbeat also carries
the show time, the scene cue, the camera's presence and the devices' and OSC's state.

Show switches (a playlist step, attract mode on or off, a valid edit, a staff `next` or cue) happen inside the
running engine when its heartbeat names a control file (`masquerade run --control FILE`, engine/switch.py): the
supervisor writes the request there and the engine cross-fades over `[engine] transition` seconds, reporting
in its heartbeat; a show the engine refuses is skipped (an edit: the old version plays on). An engine that
takes no requests is restarted with the new show. `restarts` counts only crashes, hangs, refusals and staff
restarts; planned switches are counted in `switches`.

Resume: the show time and the last scene cue of each show are kept (in the state file too); a show started
again after a crash, a hang, an edit or an attract interlude continues with `--start-at T --cue N`. A new
playlist entry starts from the beginning. Attract mode: when the camera has reported nobody for
`attract.after` seconds, the attract show plays until someone is there again.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from datetime import datetime
from pathlib import Path

from installation.kiosk import schedule
from installation.kiosk import site as sites
from installation.kiosk.notify import Notifier
from installation.kiosk.state import read_json, write_json

log = logging.getLogger("kiosk")
engine_log = logging.getLogger("kiosk.engine")

POLL = 0.1  # seconds between loop turns
STILL_RETRY = (2.0, 60.0)  # first and longest wait between tries to show a closed screen that exits (no display)
STOP_GRACE = 5.0  # seconds a child gets to quit after SIGTERM before SIGKILL
USER_ERROR = 2  # the engine's exit status for a bad show or a missing model (engine/cli.py)


def fingerprint(path: Path) -> str | None:
    """Changes when the file's content changes; None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


class Child:
    """One run of the engine: its process (a session of its own, so the whole group can be killed),
    its output (logged line by line, the last lines kept for tracebacks) and its heartbeat."""

    def __init__(self, argv: list[str], cwd: Path, heartbeat: Path, show: Path, env: dict):
        heartbeat.unlink(missing_ok=True)
        self.show, self.heartbeat_path = show, heartbeat
        self.started = time.monotonic()
        self.started_wall = time.time()
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True, text=True, errors="replace")
        self.pid = self.proc.pid
        self.tail: deque[str] = deque(maxlen=200)
        self.heartbeat: dict | None = None
        self.first_beat: float | None = None  # monotonic time of the first heartbeat
        self.last_beat: float | None = None  # monotonic time the frame count last grew
        self._reader = threading.Thread(target=self._read, name=f"engine-{self.pid}", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.rstrip()
            self.tail.append(line)
            engine_log.info("[%d] %s", self.pid, line)

    def poll_heartbeat(self, now: float) -> None:
        beat = read_json(self.heartbeat_path)
        if not beat or beat.get("pid") != self.pid:
            return
        if self.heartbeat is None or beat.get("frames") != self.heartbeat.get("frames"):
            self.last_beat = now
            if self.first_beat is None:
                self.first_beat = now
        self.heartbeat = beat

    def signal(self, sig: int) -> None:
        try:
            os.killpg(self.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, grace: float = STOP_GRACE) -> int | None:
        """Ask the engine to quit, then make sure it has; its exit status."""
        if self.proc.poll() is None:
            self.signal(signal.SIGTERM)
            self.signal(signal.SIGCONT)  # a stopped process cannot act on SIGTERM
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
        return self.reap()

    def kill(self) -> int | None:
        self.signal(signal.SIGKILL)
        return self.reap()

    def reap(self) -> int | None:
        try:
            code = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            return None
        self._reader.join(2)
        return code

    def traceback(self) -> str:
        """The last traceback the engine printed, else its last lines."""
        lines = list(self.tail)
        starts = [i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line]
        return "\n".join(lines[starts[-1]:] if starts else lines[-20:])


def describe_exit(code: int | None) -> str:
    if code is None:
        return "did not exit"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with status {code}"


class Supervisor:
    def __init__(self, site: sites.Site, notifier: Notifier | None = None, recent=None):
        self.site = site
        self.notifier = notifier or Notifier()
        self.recent = recent  # logs.Recent: the last log lines, for the status page
        self.commands: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self.stopping = False
        self.child: Child | None = None
        self.started_wall = time.time()
        site.state_dir.mkdir(parents=True, exist_ok=True)
        self.state_path = site.state_dir / "state.json"
        self.heartbeat_path = site.state_dir / "heartbeat.json"
        self.site_print = fingerprint(site.source)
        self.valid: dict[Path, str] = {}  # show -> fingerprint that passed validation
        self.bad: dict[Path, str | None] = {}  # show -> fingerprint that failed (skipped until it changes)
        self.playing_print: str | None = None  # fingerprint of the show file the child was started with
        self.pending_reload: tuple[float, object] | None = None  # (when a valid edit was seen, the cue then)
        self.checking: tuple[Path, str | None, int, dict] | None = None  # an edit being validated (reload_show)
        self.still: subprocess.Popen | None = None  # the closed-hours screen (installation/kiosk/still.py)
        self.still_retry_at, self.still_retry_wait, self.still_failed = 0.0, STILL_RETRY[0], False
        self.events: deque[dict] = deque(maxlen=50)
        self.errors: deque[dict] = deque(maxlen=20)
        self.failures = 0  # consecutive
        self.restarts = 0  # engine starts after a crash, hang, refusal or staff restart (kept in the state file)
        self.switches = 0  # planned show switches: in the engine, or by a restart where it takes no requests
        self.unplanned = False  # the last engine ended unplanned: its successor's start is a restart
        self.planned = False  # the last engine was stopped to switch shows: its successor's start is a switch
        self.control_path = site.state_dir / "control.json"  # show requests to the engine (engine/switch.py)
        self.switching: dict | None = None  # the request in flight: {"id", "show", "print", "since", "why", ...}
        self.last_switch: dict | None = None  # the last one's result, as the engine reported it
        self.starts = 0
        self.safe_mode = False
        self.safe_since = 0.0
        self.next_start = 0.0  # monotonic: no start before this (back-off)
        self.index, self.entry_started = 0, time.time()
        self.last_heartbeat: dict | None = None
        self.mode = "starting"
        self.resume: dict[str, dict] = {}  # show path -> {"t": show time, "cue": scene cue or None}
        self.attracting = False
        self.absent_since: float | None = None  # monotonic time the camera last began to see nobody
        self._last_state_write = float("-inf")
        self._restore()

    # -- state ------------------------------------------------------------------------------------------

    def _restore(self) -> None:
        """Pick up where the last supervisor stopped: the playlist entry, the counters, and no orphan."""
        old = read_json(self.state_path)
        if not old:
            return
        self.restarts = int(old.get("restarts", 0))
        self.switches = int(old.get("switches", 0))
        self.last_switch = old.get("last_switch") if isinstance(old.get("last_switch"), dict) else None
        self.valid = {Path(k): v for k, v in (old.get("validated") or {}).items()}  # content hashes: still valid
        self.events.extend(old.get("events", [])[-50:])
        self.errors.extend(old.get("errors", [])[-20:])
        self.resume = {k: v for k, v in (old.get("resume") or {}).items() if isinstance(v, dict)}
        index = old.get("playlist_index")
        if isinstance(index, int) and 0 <= index < len(self.site.playlist) \
                and str(self.site.playlist[index].show) == old.get("playlist_show"):
            self.index = index
            self.entry_started = float(old.get("entry_started", time.time()))
        orphan = (old.get("child") or {}).get("pid")
        if isinstance(orphan, int) and _is_our_engine(orphan, self.heartbeat_path):
            log.warning("an engine (pid %d) from the previous supervisor is still running: stopping it", orphan)
            try:
                os.killpg(orphan, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.event("resumed", f"playlist entry {self.index} ({self.site.playlist[self.index].show.name})")

    def event(self, kind: str, detail: str = "") -> None:
        with self.lock:
            self.events.append({"time": time.time(), "kind": kind, "detail": detail})
        self._last_state_write = float("-inf")  # write the state file on this turn

    def error(self, message: str, traceback: str = "") -> None:
        log.error("%s%s", message, f"\n{traceback}" if traceback else "")
        with self.lock:
            self.errors.append({"time": time.time(), "message": message, "traceback": traceback})
        self._last_state_write = float("-inf")

    def snapshot(self) -> dict:
        """Everything the state file and the status page show, as plain data."""
        child = self.child
        with self.lock:
            now = datetime.now()
            return {
                "site": self.site.name, "supervisor_pid": os.getpid(), "updated": time.time(),
                "started": self.started_wall, "uptime": time.time() - self.started_wall, "mode": self.mode,
                "show": str(child.show) if child and child.last_beat is not None else None,  # once it plays
                "playlist": [{"show": str(e.show), "seconds": e.seconds} for e in self.site.playlist],
                "playlist_index": self.index, "playlist_show": str(self.site.playlist[self.index].show),
                "entry_started": self.entry_started, "safe_show": str(self.site.safe_show),
                "safe_mode": self.safe_mode, "open": schedule.is_open(self.site.hours, now),
                "next_change": (lambda t: t.isoformat() if t else None)(schedule.next_change(self.site.hours, now)),
                "restarts": self.restarts, "consecutive_failures": self.failures, "switches": self.switches,
                "switching": self.switching["show"] if self.switching else None, "last_switch": self.last_switch,
                "transition": self.site.transition,
                "child": None if child is None else {
                    "pid": child.pid, "show": str(child.show), "started": child.started_wall,
                    "running": child.proc.poll() is None, "seconds_since_frame":
                        None if child.last_beat is None else round(time.monotonic() - child.last_beat, 2)},
                "heartbeat": self.last_heartbeat,
                "show_time": (self.last_heartbeat or {}).get("t"),
                "resume": dict(self.resume), "attract": {
                    "show": str(self.site.attract.show) if self.site.attract.show else None,
                    "after": self.site.attract.after, "playing": self.attracting,
                    "presence": (self.last_heartbeat or {}).get("presence"),
                    "nobody_for": None if self.absent_since is None
                    else round(time.monotonic() - self.absent_since, 1)},
                "crowd": None if not self.site.crowd.enabled else {"port": self.site.crowd.port},
                "controls": self.site.status.token is not None,
                "memory": memory(child.pid if child else None),
                "disk": {"state": disk(self.site.state_dir), "logs": disk(self.site.log_dir)},
                "validated": {str(k): v for k, v in self.valid.items()},
                "events": list(self.events), "errors": list(self.errors),
            }

    def write_state(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_state_write < 1.0:
            return
        self._last_state_write = now
        try:
            write_json(self.state_path, self.snapshot())
        except OSError as e:  # a full disk: keep running, say so (once a minute at most)
            log.error("state file %s not written: %s", self.state_path, e)
            self._last_state_write = now + 59

    # -- shows ------------------------------------------------------------------------------------------

    def validate_later(self, show: Path, print_: str | None) -> None:
        """Validate `show` (as it was when it printed `print_`) in a thread: the loop goes on meanwhile,
        the result is picked up by reload_show. A content already validated is valid at once."""
        result: dict = {}
        if print_ is not None and self.valid.get(show) == print_:
            result["why"] = None
        else:
            w = self.site.watchdog
            threading.Thread(target=lambda: result.update(why=check_show(show, w.validate_seconds,
                                                                          w.validate_memory_mb)),
                             name="validate", daemon=True).start()
        self.checking = (show, print_, self.starts, result)

    def usable(self, show: Path) -> bool:
        """Not known bad (a bad show is tried again once its file changes)."""
        if show in self.bad:
            if self.bad[show] == fingerprint(show):
                return False
            del self.bad[show]
        return True

    def mark_bad(self, show: Path, why: str, traceback: str = "") -> None:
        self.bad[show] = fingerprint(show)
        self.valid.pop(show, None)
        self.error(f"show skipped: {why}", traceback)
        self.event("skipped", str(show))

    def wanted(self) -> Path | None:
        """The show that should be playing now; None when the kiosk is closed."""
        if not schedule.is_open(self.site.hours, datetime.now()):
            return None
        if self.safe_mode:
            return self.site.safe_show
        if self.attracting and self.site.attract.show is not None and self.usable(self.site.attract.show):
            return self.site.attract.show
        n = len(self.site.playlist)
        for step in range(n):  # the scheduled entry, or the next usable one
            show = self.site.playlist[(self.index + step) % n].show
            if self.usable(show):
                if step:
                    self.index, self.entry_started = (self.index + step) % n, time.time()
                return show
        if not self.safe_mode:
            self.enter_safe_mode("no show in the playlist can play")
        return self.site.safe_show

    def enter_safe_mode(self, why: str) -> None:
        self.safe_mode, self.safe_since = True, time.monotonic()
        log.warning("playing the safe show %s: %s", self.site.safe_show, why)
        self.event("safe-mode", why)

    def leave_safe_mode(self, why: str) -> None:
        if self.safe_mode:
            self.safe_mode, self.failures = False, 0
            self.event("safe-mode-off", why)

    # -- the child --------------------------------------------------------------------------------------

    def start(self, show: Path) -> None:
        """Start the engine on `show`. It is not validated first: the engine checks its show itself and
        exits with status 2 when it cannot play it (a bad file, a missing model), and is then skipped."""
        argv = [*self.site.command, "run", str(show), "--heartbeat", str(self.heartbeat_path),
                "--control", str(self.control_path)]
        self.control_path.unlink(missing_ok=True)  # no request left for the new engine
        where = self.resume.get(str(show)) or {}
        if where.get("t"):
            argv += ["--start-at", f"{float(where['t']):.3f}"]
        if where.get("cue"):
            argv += ["--cue", str(int(where["cue"]))]
        argv += self.site.args
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        try:
            self.child = Child(argv, self.site.state_dir, self.heartbeat_path, show, env)
        except OSError as e:
            self.error(f"cannot start the engine ({' '.join(argv)}): {e}")
            self.failed("start failed", backoff_only=True)
            return
        self.playing_print = fingerprint(show)
        self.pending_reload = None  # a start reads the file as it is now
        self.last_heartbeat = None  # the old engine's is not this one's: no show, fps or cue until it beats
        if self.starts and self.unplanned:
            self.restarts += 1
        elif self.starts and self.planned:
            self.switches += 1
        self.unplanned = self.planned = False
        self.starts += 1
        log.info("engine started: pid %d, %s", self.child.pid, show)
        at = f" at {float(where['t']):.1f} s" if where.get("t") else ""
        self.event("start", f"pid {self.child.pid}{at}: {show}")

    def stop_child(self, why: str) -> None:
        child, self.child = self.child, None
        self.switching = None  # a stopped engine answers no request
        if child is not None:
            code = child.stop()
            log.info("engine pid %d stopped (%s): %s", child.pid, why, describe_exit(code))
            self.event("stop", f"pid {child.pid}: {why}")

    def failed(self, what: str, backoff_only: bool = False) -> None:
        """Count a failure and set the back-off: the first restart is at once, then 1, 2, 4 ... s."""
        self.failures += 1
        w = self.site.watchdog
        delay = 0.0 if self.failures == 1 else min(w.backoff_max, w.backoff_initial * 2 ** (self.failures - 2))
        self.next_start = time.monotonic() + delay
        if not backoff_only and not self.safe_mode and self.failures >= w.failures_before_safe:
            self.enter_safe_mode(f"{self.failures} failures in a row (last: {what})")
        if delay:
            log.warning("next engine start in %.1f s (failure %d in a row)", delay, self.failures)

    def check_child(self, now: float) -> None:
        child = self.child
        if child is None:
            return
        child.poll_heartbeat(now)
        if self.switching is not None:
            self.follow_switch(child, now)
            if self.child is None:
                return
        if child.heartbeat is not None:
            self.last_heartbeat = beat = child.heartbeat
            if child.last_beat is not None and isinstance(beat.get("t"), int | float) \
                    and beat.get("source") in (None, str(child.show)):  # not the old show's, just after a switch
                self.resume[str(child.show)] = {"t": beat["t"], "cue": beat.get("cue")}
            self.watch_presence(beat.get("presence"), now)
        code = child.proc.poll()
        w = self.site.watchdog
        if code is not None:
            child.reap()
            self.child, self.switching, self.unplanned = None, None, True
            how = describe_exit(code)
            if code == USER_ERROR and child.show != self.site.safe_show:
                self.mark_bad(child.show, f"{child.show}: the engine refused it ({how})", child.traceback())
                self.next_start = now
                return
            self.error(f"engine pid {child.pid} {how} ({child.show.name})", child.traceback())
            self.event("crash", f"pid {child.pid} {how}")
            self.failed(how)
            return
        if child.last_beat is None:
            if now - child.started > w.startup_timeout:
                self.hung(child, f"no frame {w.startup_timeout:.0f} s after the start")
        elif now - child.last_beat > w.heartbeat_timeout:
            self.hung(child, f"no new frame for {now - child.last_beat:.1f} s")
        elif self.failures and now - child.last_beat < 1 and now - child.first_beat > w.healthy_after:
            self.failures = 0
            log.info("engine healthy for %.0f s: failure count reset", w.healthy_after)

    def switch_to(self, show: Path, why: str) -> None:
        """Play `show` in place of the engine's: a cross-fade inside the running engine when its heartbeat names
        its control file, else (an engine that takes no requests, or is not playing yet) a restart with it."""
        if self.switching is not None:
            return  # one at a time: asked again on a later turn if still wanted
        child = self.child
        if child is None or child.last_beat is None or not (child.heartbeat or {}).get("control"):
            self.planned = True
            self.stop_child(why)
            return
        where = self.resume.get(str(show)) or {}
        request = {"id": f"{os.getpid()}-{time.time_ns()}", "show": str(show), "seconds": self.site.transition,
                   "at": float(where.get("t") or 0.0), "cue": int(where["cue"]) if where.get("cue") else None}
        try:
            write_json(self.control_path, request)
        except OSError as e:
            self.error(f"cannot ask the engine to switch ({self.control_path}: {e}): restarting it with {show.name}")
            self.planned = True
            self.stop_child(why)
            return
        self.switching = {**request, "print": fingerprint(show), "since": time.monotonic(), "why": why}
        log.info("switching to %s inside the engine (%s; %g s cross-fade)", show, why, self.site.transition)
        self.event("switch-asked", f"{show.name}: {why}")

    def follow_switch(self, child: Child, now: float) -> None:
        """The engine's answer to the request in flight (its heartbeat's `switch`): done, the show is the new
        one; failed, the old one plays on and the new one is skipped (an edit: refused); no answer within
        `startup_timeout`, the engine is restarted with the new show."""
        s, answer = self.switching, (child.heartbeat or {}).get("switch") or {}
        show = Path(s["show"])
        finished = answer.get("id") == s["id"] and (answer.get("state") == "failed" or
                                                     answer.get("state") == "done" and answer.get("frames"))
        if not finished:
            if now - s["since"] > self.site.watchdog.startup_timeout:
                self.error(f"the engine did not switch to {show.name} within {self.site.watchdog.startup_timeout:g} "
                           "s: restarting it with that show")
                self.switching = None
                self.planned = True
                self.stop_child(f"switch to {show.name} timed out")
            return
        self.switching = None
        self.last_switch = {"show": str(show), "why": s["why"], "time": time.time(),
                            **{k: answer.get(k) for k in ("state", "seconds", "frames", "longest_gap_ms", "error")}}
        if answer["state"] == "done":
            child.show, self.playing_print = show, s["print"]
            self.switches += 1
            log.info("now playing %s (switched in %.2f s, %d frames presented meanwhile, longest gap %.0f ms)",
                     show, answer.get("seconds") or 0, answer.get("frames") or 0, answer.get("longest_gap_ms") or 0)
            self.event("switch", f"{show.name} in {answer.get('seconds') or 0:.1f} s, longest frame gap "
                                 f"{answer.get('longest_gap_ms') or 0:.0f} ms ({s['why']})")
            return
        self.event("switch-failed", f"{show.name}: {answer.get('error')}")
        if show == child.show:  # an edit of the playing show: the old version plays on
            self.error(f"show edit refused by the engine, the running show goes on: {answer.get('error')}")
        else:
            self.mark_bad(show, f"{show}: the engine refused it, the show goes on: {answer.get('error')}")

    def engine_osc_port(self) -> int | None:
        """The running engine's OSC port, as its heartbeat reports it (None: no engine, or OSC off)."""
        child = self.child
        beat = child.heartbeat if child is not None else None
        return ((beat or {}).get("osc") or {}).get("port")

    def watch_presence(self, presence, now: float) -> None:
        """Attract mode: on after `attract.after` seconds of nobody, off as soon as someone is there. An
        attract show without a camera (no presence) gives way to the playlist after the same time."""
        attract = self.site.attract
        if attract.show is None or self.safe_mode:
            return
        if presence is None and not self.attracting:
            self.absent_since = None
            return
        if presence is not None and presence >= 0.5:
            self.absent_since = None
            if self.attracting:
                self.attracting = False
                self.event("attract-off", "someone is there")
            return
        if self.absent_since is None:
            self.absent_since = now
        elif now - self.absent_since >= attract.after:
            self.absent_since = None
            self.attracting = not self.attracting if presence is None else True
            if presence is None:
                self.event("attract-off", "the attract show reports no presence (no [camera]?)")
            elif self.child is not None and self.child.show != attract.show:
                self.event("attract", f"nobody for {attract.after:.0f} s: {attract.show.name}")

    def hung(self, child: Child, why: str) -> None:
        code = child.kill()
        self.child, self.switching, self.unplanned = None, None, True
        self.error(f"engine pid {child.pid} hung ({why}): killed, {describe_exit(code)}", child.traceback())
        self.event("hang", f"pid {child.pid}: {why}")
        self.failed("hang")

    # -- reloads and commands ---------------------------------------------------------------------------

    def reload_site(self) -> None:
        print_ = fingerprint(self.site.source)
        if print_ is None or print_ == self.site_print:
            return
        self.site_print = print_
        try:
            new = sites.load(self.site.source)
        except sites.SiteError as e:
            self.error(f"site file edit refused, the old settings stay: {e}")
            self.event("reload-refused", str(self.site.source))
            return
        new.status, new.state_dir, new.log_dir = self.site.status, self.site.state_dir, self.site.log_dir
        old_show = self.site.playlist[self.index].show
        self.site = new
        if self.index >= len(new.playlist) or new.playlist[self.index].show != old_show:
            self.index, self.entry_started = 0, time.time()
        log.info("site file reloaded: %s", new.source)
        self.event("reload", str(new.source))

    def reload_show(self) -> None:
        child = self.child
        if self.checking is not None:
            show, print_, starts, result = self.checking
            if "why" not in result:
                return  # still validating
            self.checking = None
            if child is None or child.show != show or self.starts != starts or fingerprint(show) != print_:
                return  # stale: another engine since, or the file changed again (judged next turn)
            why = result["why"]
            if why is None:
                self.valid[show] = print_
        else:
            if child is None or self.playing_print is None:
                return
            print_ = fingerprint(child.show)
            if print_ == self.playing_print:
                return
            self.playing_print = print_  # judged once per edit
            self.validate_later(child.show, print_)
            return self.reload_show()  # done already when the content was validated before
        if why is not None:
            self.error(f"show edit refused, the running show goes on: {why}")
            self.event("reload-refused", str(child.show))
            return
        cue = (self.last_heartbeat or {}).get("cue")
        self.pending_reload = (time.monotonic(), cue)
        log.info("show file changed and valid: it plays from the next scene cue, or within %g s",
                 self.site.watchdog.reload_within)
        self.event("reload-pending", str(child.show))
        self.apply_reload()

    def apply_reload(self) -> None:
        """A validated edit takes over at a cut the audience expects: the next scene cue the engine
        reports, or `reload_within` seconds after the edit at the latest (0: at once)."""
        if self.pending_reload is None or self.child is None or self.switching is not None:
            return
        since, cue = self.pending_reload
        now_cue = (self.last_heartbeat or {}).get("cue")
        if now_cue == cue and time.monotonic() - since < self.site.watchdog.reload_within:
            return
        self.pending_reload = None
        show = self.child.show
        log.info("applying the show edit")
        self.switch_to(show, "show file changed")
        self.event("reload", str(show))

    def handle(self, command: tuple) -> None:
        kind, arg = command
        log.info("staff command: %s %s", kind, arg if arg is not None else "")
        self.event("command", f"{kind} {arg if arg is not None else ''}".strip())
        if kind == "restart":
            self.stop_child("restart requested")
            self.unplanned = True
            self.next_start = 0.0
        elif kind in ("next", "cue"):
            n = len(self.site.playlist)
            self.index = (self.index + 1) % n if kind == "next" else arg
            self.entry_started = time.time()
            self.resume.pop(str(self.site.playlist[self.index].show), None)
            self.leave_safe_mode(f"{kind} requested")
            self.failures, self.next_start = 0, 0.0
            show = self.site.playlist[self.index].show
            self.bad.pop(show, None)  # a staff member asked for it: try it
            if self.child is not None and self.child.show == show:
                self.switch_to(show, f"{kind} requested")  # from its beginning; another show: this turn

    def find_entry(self, show: str) -> int | None:
        for i, entry in enumerate(self.site.playlist):
            if show in (str(entry.show), entry.show.name, str(i)) or entry.show.match(show):
                return i
        return None

    # -- the loop ---------------------------------------------------------------------------------------

    def turn(self) -> None:
        now = time.monotonic()
        while True:
            try:
                self.handle(self.commands.get_nowait())
            except queue.Empty:
                break
        self.reload_site()
        self.reload_show()
        self.apply_reload()
        if not self.safe_mode:
            durations = [e.seconds for e in self.site.playlist]
            index, started = schedule.advance(durations, self.index, self.entry_started, time.time())
            if index != self.index:
                self.index, self.entry_started = index, started
                self.resume.pop(str(self.site.playlist[index].show), None)
                self.event("next", f"playlist entry {index}")
        elif now - self.safe_since > self.site.watchdog.safe_retry_minutes * 60:
            self.leave_safe_mode("trying the scheduled show again")
        self.check_child(now)
        want = self.wanted()
        if self.child is not None and self.child.show != want:
            if want is None:
                self.stop_child("schedule")
            else:
                self.switch_to(want, f"switching to {want.name}")
        if want is None:
            self.mode = "closed"
            self.show_closed()
        elif self.child is None and now >= self.next_start:
            self.stop_still()
            self.start(want)
        if want is not None:
            self.mode = ("safe" if self.safe_mode else "playing") if self.child and self.child.last_beat \
                else ("starting" if self.child else "waiting")
        self.write_state()
        self.notifier.watchdog()
        beat = self.last_heartbeat or {}
        self.notifier.status(f"{self.mode}: {want.name if want else 'closed'}, {beat.get('fps', 0):.0f} fps, "
                             f"{self.restarts} restarts, {self.switches} switches")

    def show_closed(self) -> None:
        """Outside opening hours the engine rests and the wall shows black or the site's still."""
        if self.site.closed == "off" or (self.still is not None and self.still.poll() is None):
            return
        now = time.monotonic()
        if self.still is not None:  # it exited (no display yet, say): one error, then tries again, backing off
            if now < self.still_retry_at:
                return
            if not self.still_failed:
                self.error(f"the closed screen exited (code {self.still.returncode}; see still.log): trying again "
                           f"after {STILL_RETRY[0]:g} s, then less often (at most every {STILL_RETRY[1]:g} s)")
            self.still_failed = True
            self.still_retry_wait = min(STILL_RETRY[1], self.still_retry_wait * 2)
        else:
            self.still_retry_wait = STILL_RETRY[0]
        self.still_retry_at = now + self.still_retry_wait
        argv = [sys.executable, "-m", "installation.kiosk.still"]
        argv += [] if self.site.closed == "black" else [self.site.closed]
        size = next((a.split("=", 1)[1] for a in self.site.args if a.startswith("--size=")), None)
        if "--size" in self.site.args[:-1]:
            size = self.site.args[self.site.args.index("--size") + 1]
        argv += ["--size", size] if size else []
        try:
            with open(self.site.log_dir / "still.log", "ab") as out:  # its complaints, for the technician
                self.still = subprocess.Popen(argv, cwd=Path(__file__).resolve().parents[2], stdin=subprocess.DEVNULL,
                                              stdout=out, stderr=subprocess.STDOUT)
        except OSError as e:
            self.error(f"cannot show the closed screen ({' '.join(argv)}): {e}")
            return
        if not self.still_failed:  # a retry is not news
            log.info("closed: showing %s (pid %d)", self.site.closed, self.still.pid)
            self.event("closed", self.site.closed)

    def stop_still(self) -> None:
        still, self.still, self.still_failed = self.still, None, False
        if still is not None and still.poll() is None:
            still.terminate()
            try:
                still.wait(timeout=5)
            except subprocess.TimeoutExpired:
                still.kill()
                still.wait()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "stopping", True))
        log.info("kiosk supervisor for %s (pid %d): %d shows in the playlist, safe show %s", self.site.name,
                 os.getpid(), len(self.site.playlist), self.site.safe_show)
        self.notifier.ready(f"supervising {self.site.name}")
        try:
            while not self.stopping:
                self.turn()
                time.sleep(POLL)
        finally:
            self.notifier.stopping()
            self.stop_child("supervisor stopping")
            self.stop_still()
            self.mode = "stopped"
            self.write_state(force=True)
            log.info("kiosk supervisor stopped")
        return 0


def check_show(show: Path, seconds: float = 60.0, memory_mb: float = 8192.0) -> str | None:
    """None when the engine would play `show`, else why not (one line): checked in a separate interpreter,
    since reading a show imports torch, which builds its model and filters on the CPU and draws a frame
    (installation/kiosk/validate.py), in at most `memory_mb` of address space, killed after `seconds`."""
    if fingerprint(show) is None:
        return f"{show}: cannot read the show file"
    argv = [sys.executable, "-m", "installation.kiosk.validate", "--memory-mb", f"{memory_mb:g}", "--seconds",
            f"{seconds:g}", str(show)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    try:
        done = subprocess.run(argv, cwd=sites.PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=seconds)
    except subprocess.TimeoutExpired:
        return f"{show}: validating took more than {seconds:g} s (its model and filters, one frame on the CPU)"
    except OSError as e:
        return f"{show}: cannot start the validator: {e}"
    if done.returncode == 0:
        return None
    lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return lines[-1][:600] if lines else f"{show}: the validator {describe_exit(done.returncode)}"


def _proc_mb(path: str, key: str) -> float | None:
    """A `key: N kB` line of a /proc file, in MB; None when there is none (no such process, not Linux)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def memory(pid: int | None) -> dict:
    """The engine's resident memory (VmRSS) and the system's available memory, in MB (None: unknown)."""
    return {"engine_rss_mb": _proc_mb(f"/proc/{pid}/status", "VmRSS") if pid else None,
            "available_mb": _proc_mb("/proc/meminfo", "MemAvailable")}


def disk(folder: Path) -> dict | None:
    """Free and total space of the disk `folder` is on, in MB; None when it cannot be read."""
    try:
        usage = shutil.disk_usage(folder)
    except OSError:
        return None
    return {"path": str(folder), "free_mb": round(usage.free / 2**20, 1), "total_mb": round(usage.total / 2**20, 1)}


def _is_our_engine(pid: int, heartbeat: Path) -> bool:
    """Is `pid` an engine started by a supervisor of this site (its command line names our heartbeat)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(heartbeat).encode() in cmdline
