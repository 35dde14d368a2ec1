"""Generation in a worker thread, so the display never waits on the model.

The display asks for the frame it will need (`request`, newest request wins) and takes whatever is
ready (`latest`: the two newest frames, so it can blend between them). One request is in flight at a
time: a model faster than the display is not run for frames nobody sees. `wait_for` is the lockstep
mode of headless runs and tests: the same thread, but every tick is shown exactly, and a failed
generation is raised there (a frame-exact output must not skip a frame), where live it is only logged.
The first live `request` lets a compiled generator warm up in the background (`Pipeline.warm_up`): the
eager one draws until it is ready, so a show never waits for a compile; lockstep never swaps models.
"""

from __future__ import annotations

import threading
import time

from engine.frame import Frame, Tick


class Producer:
    def __init__(self, pipeline):
        self.pipeline = pipeline
        self._cond = threading.Condition()
        self._request: Tick | None = None
        self._frames: list[Frame] = []  # oldest first, at most two
        self._error: BaseException | None = None
        self._busy = False
        self._closed = False
        self._warmed = False  # live requests start the compiled generator's warm-up, once
        self.seconds_per_frame = 0.0  # smoothed generation time, the display's lead
        self.failures = 0  # generations that raised (live: logged, and the show goes on)
        self._thread = threading.Thread(target=self._run, name="masquerade-producer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._request is None and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                tick, self._request, self._busy = self._request, None, True
            start = time.perf_counter()
            try:
                frame = self.pipeline.generate(tick)
            except BaseException as e:  # handed to the display thread, which decides
                with self._cond:
                    self._error, self._busy = e, False
                    self._cond.notify_all()
                continue
            took = time.perf_counter() - start
            with self._cond:
                self.seconds_per_frame = took if not self.seconds_per_frame else \
                    0.8 * self.seconds_per_frame + 0.2 * took
                self._frames = (self._frames + [frame])[-2:]
                self._busy = False
                self._cond.notify_all()

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._busy and self._request is None

    def request(self, tick: Tick) -> None:
        if not self._warmed:
            self._warmed = True
            warm_up = getattr(self.pipeline, "warm_up", None)  # a Pipeline's, ScenePlayer's or kiosk Switcher's
            if warm_up is not None:
                warm_up()
        self._ask(tick)

    def _ask(self, tick: Tick) -> None:
        with self._cond:
            self._request = tick
            self._cond.notify_all()

    def latest(self) -> list[Frame]:
        """The two newest frames. A failed generation is not raised here (the display keeps showing what
        it has): `take_error` hands it over for logging."""
        with self._cond:
            return list(self._frames)

    def take_error(self) -> BaseException | None:
        with self._cond:
            error, self._error = self._error, None
            if error is not None:
                self.failures += 1
            return error

    def wait_for(self, tick: Tick, timeout: float = 600.0) -> Frame:
        self._ask(tick)
        deadline = time.monotonic() + timeout
        with self._cond:
            while not (self._frames and self._frames[-1].tick == tick):
                self._raise()
                if not self._cond.wait(timeout=max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"no frame for {tick} after {timeout}s")
            return self._frames[-1]

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=5)


def blend_weight(frames: list[Frame], t: float) -> float:
    """How far the display at show time `t` is from the older frame to the newer (0..1)."""
    if len(frames) < 2:
        return 1.0
    a, b = frames[-2].tick.t, frames[-1].tick.t
    if b <= a:
        return 1.0
    return min(1.0, max(0.0, (t - a) / (b - a)))
