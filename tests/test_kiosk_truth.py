"""The status page tells the truth (issue 16): the heartbeat's scene cue is None until a cue fires, so a
restarted engine is not sent a `--cue` nothing asked for; the page names a show once it plays."""

import os
import signal
import time
from pathlib import Path

from engine import show as shows
from engine.loop import live_state
from engine.pipeline import make_bus
from tests.conftest import DEFAULT_SHOW, until
from tests.test_kiosk import SITE, Kiosk
from tests.test_kiosk import site_dir as site_dir  # the fixture


def test_the_heartbeat_reports_no_cue_until_one_fires():
    bus = make_bus(shows.load(DEFAULT_SHOW))
    for t in (0.0, 1.0, 2.0):  # frames go by, nobody cues
        bus.snapshot(t)
        assert live_state([], None, bus, None)["cue"] is None
    bus.post("osc:/masq/scene/cue", 3.0)
    bus.snapshot(3.0)
    assert live_state([], None, bus, None)["cue"] == 3
    bus.snapshot(4.0)  # the cue fired once: it stays the last cue fired
    assert live_state([], None, bus, None)["cue"] == 3


def test_a_restarted_engine_is_sent_a_cue_only_when_one_fired(site_dir):
    cue = site_dir / "cue.txt"
    with Kiosk(site_dir, SITE, behaviour={"a.toml": {"cue_file": str(cue)}}) as kiosk:
        pid = kiosk.playing("a.toml")["child"]["pid"]
        time.sleep(0.5)  # a show time to resume at
        os.kill(pid, signal.SIGKILL)
        pid = kiosk.playing("a.toml", not_pid=pid)["child"]["pid"]
        line = until(lambda: next((x for x in kiosk.log().splitlines() if f"fake engine {pid} playing" in x), None),
                     10, "the new engine's command line")
        assert "'--start-at'" in line and "'--cue'" not in line
        cue.write_text("2")  # the show fires cue 2: a restart now resumes it
        until(lambda: (kiosk.state().get("resume") or {}).get(str(site_dir / "shows" / "a.toml"), {}).get("cue") == 2,
              10, "cue 2 reported")
        os.kill(pid, signal.SIGKILL)
        pid = kiosk.playing("a.toml", not_pid=pid)["child"]["pid"]
        line = until(lambda: next((x for x in kiosk.log().splitlines() if f"fake engine {pid} playing" in x), None),
                     10, "the new engine's command line")
        assert "'--cue', '2'" in line


def test_the_page_names_the_new_show_only_once_it_plays(site_dir):
    site = SITE.replace('show = "shows/a.toml"',
                        'show = "shows/a.toml"\nminutes = 0.04\n[[playlist]]\nshow = "shows/b.toml"')
    with Kiosk(site_dir, site, behaviour={"b.toml": {"start_after": 2.0}}) as kiosk:
        kiosk.playing("a.toml")
        seen = []

        def b_plays():
            s = kiosk.state()
            if s.get("show") and Path(s["show"]).name == "b.toml":
                seen.append(s)
            return s if (s.get("heartbeat") or {}).get("show") == "b" else None
        until(b_plays, 20, "b playing")
        assert seen, "the state never named b"
        for s in seen:  # named b only with b's own heartbeat: not while a's last one, or none, is shown
            assert s["heartbeat"]["show"] == "b" and s["heartbeat"]["pid"] == s["child"]["pid"], s["heartbeat"]
