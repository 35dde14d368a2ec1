import contextlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SHOW = ROOT / "shows" / "default.toml"
DEFAULT_MODEL = ROOT / "assets" / "models" / "emoji64.safetensors"
FIXTURES = ROOT.parent / "shared" / "fixtures"


def until(predicate, timeout=10.0, what="condition"):
    """Poll until `predicate()` is truthy and return it; fail after `timeout` seconds (no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def masquerade(*args, env=None, timeout=300):
    """The real command, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="session")
def gl():
    from engine.compositor import headless_context

    ctx = headless_context()
    yield ctx
    ctx.release()


@contextlib.contextmanager
def x_server(display: str, *screens: str):
    """A real X server (Xvfb) on `display` with the given screens ("1280x800x24"), taking connections."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (setup.sh installs it with apt)")
    argv = ["Xvfb", display, "-nolisten", "tcp"]
    for i, screen in enumerate(screens or ("1280x800x24",)):
        argv += ["-screen", str(i), screen]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def taking_connections():  # the socket can exist before the server answers: a client then gets nothing
        from PIL import ImageGrab
        try:
            return ImageGrab.grab(xdisplay=display, bbox=(0, 0, 1, 1)) is not None
        except OSError:
            return proc.poll() is not None  # it died: say so below rather than wait
    try:
        until(taking_connections, 20, f"Xvfb {display}")
        assert proc.poll() is None, f"Xvfb {display} exited with code {proc.returncode} (display in use?)"
        yield display
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def xvfb():
    """A real X server for window tests; its DISPLAY is set for this process while it lives."""
    with x_server(f":{90 + os.getpid() % 100}") as display:
        old = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = display
        yield display
        if old is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = old
