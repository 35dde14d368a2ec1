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


@pytest.fixture(scope="session")
def xvfb():
    """A real X server for window tests; its DISPLAY is set for this process while it lives."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed (setup.sh installs it with apt)")
    display = f":{90 + os.getpid() % 100}"
    proc = subprocess.Popen(["Xvfb", display, "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    socket = Path(f"/tmp/.X11-unix/X{display[1:]}")
    for _ in range(100):
        if socket.exists():
            break
        time.sleep(0.05)
    old = os.environ.get("DISPLAY")
    os.environ["DISPLAY"] = display
    yield display
    if old is None:
        os.environ.pop("DISPLAY", None)
    else:
        os.environ["DISPLAY"] = old
    proc.terminate()
    proc.wait(timeout=10)
