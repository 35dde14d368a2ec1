"""Crowd steering: visitors' phones vote a direction; the engine steers by the mean of recent votes.

Off unless the site file says `[crowd] enabled = true`. Its own port (8081), its own small app in the
supervisor's process (no torch): `GET /` (the phone page: drag a dot in a square; it hands the phone a
random token in a cookie), `POST /api/vote` with `{"x": -1..1, "y": -1..1}` (the cookie is needed), and
`GET /api/crowd` (the mean and how many phones count). Nothing else: the staff controls live on the
status page's port only, so `/api/restart` here is 404.

Each phone counts once: its latest vote, for `window` seconds. A phone may vote `votes_per_second` times
a second (more: 429, not counted), and one address may take at most `TOKENS_PER_MINUTE` new tokens, so
clearing cookies does not buy more votes. A sender thread sends the mean `send_per_second` times a second
to the engine's OSC port (the one its heartbeat reports) over loopback: x on `x_address`, y on
`y_address`, each mapped from -1..1 to the fader range 0..1 (0.5: no push). With the default addresses
`/masq/direction/1` and `/2` the show needs `[latent] directions = 2` or more (docs/osc.md); when every
vote has expired it sends 0.5 once, so the walk lets go.
"""

from __future__ import annotations

import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque

import uvicorn
from fastapi import Body, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pythonosc.udp_client import SimpleUDPClient

log = logging.getLogger("kiosk.crowd")

COOKIE = "masq-crowd"
MAX_PHONES = 5000  # tokens remembered (the oldest are forgotten first)
TOKENS_PER_MINUTE = 20  # new tokens one address may take


class Votes:
    """Each phone's latest vote and its rate limit; thread-safe."""

    def __init__(self, window: float, per_second: float, clock=time.monotonic):
        self.window, self.interval, self.clock = window, 1.0 / per_second, clock
        self.lock = threading.Lock()
        self.tokens: OrderedDict[str, float] = OrderedDict()  # token -> time of its last vote (or issue)
        self.votes: dict[str, tuple[float, float, float]] = {}  # token -> (time, x, y)
        self.issued: dict[str, deque] = {}  # address -> times tokens were issued to it (last minute)
        self.refused = 0

    def issue(self, address: str) -> str | None:
        now = self.clock()
        with self.lock:
            times = self.issued.setdefault(address, deque())
            while times and now - times[0] > 60:
                times.popleft()
            if len(times) >= TOKENS_PER_MINUTE:
                return None
            if len(self.issued) > MAX_PHONES:  # forget addresses quiet for a minute
                for quiet in [a for a, t in self.issued.items() if not t or now - t[-1] > 60]:
                    del self.issued[quiet]
            times.append(now)
            token = secrets.token_urlsafe(16)
            self.tokens[token] = float("-inf")
            while len(self.tokens) > MAX_PHONES:
                old, _ = self.tokens.popitem(last=False)
                self.votes.pop(old, None)
            return token

    def known(self, token: str | None) -> bool:
        with self.lock:
            return token is not None and token in self.tokens

    def vote(self, token: str, x: float, y: float) -> bool:
        """Count the vote; False when the phone votes too often (or its token is unknown)."""
        now = self.clock()
        with self.lock:
            last = self.tokens.get(token)
            if last is None or now - last < self.interval:
                self.refused += 1
                return False
            self.tokens[token] = now
            self.tokens.move_to_end(token)
            self.votes[token] = (now, x, y)
            return True

    def mean(self) -> tuple[int, float, float]:
        """(phones, mean x, mean y) over each phone's latest vote within the window."""
        now = self.clock()
        with self.lock:
            for token in [k for k, (t, _, _) in self.votes.items() if now - t > self.window]:
                del self.votes[token]
            n = len(self.votes)
            if not n:
                return 0, 0.0, 0.0
            return n, sum(v[1] for v in self.votes.values()) / n, sum(v[2] for v in self.votes.values()) / n


class Sender:
    """Sends the crowd's mean to the engine's OSC port over loopback, in a daemon thread."""

    def __init__(self, votes: Votes, crowd, engine_port):
        self.votes, self.crowd, self.engine_port = votes, crowd, engine_port  # engine_port(): int | None
        self.sent = 0
        self._neutral = True  # the last thing sent was 0.5 (or nothing yet)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crowd-osc", daemon=True)

    def start(self) -> Sender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)

    def _run(self) -> None:
        period = 1.0 / self.crowd.send_per_second
        while not self._stop.wait(period):
            try:
                self.send_once()
            except OSError as e:  # no route, a full socket buffer: try again next time
                log.warning("crowd: OSC not sent: %s", e)

    def send_once(self) -> None:
        port = self.engine_port()
        if not port:
            return
        phones, x, y = self.votes.mean()
        if not phones and self._neutral:
            return
        client = SimpleUDPClient("127.0.0.1", int(port))
        client.send_message(self.crowd.x_address, (x + 1) / 2)
        client.send_message(self.crowd.y_address, (y + 1) / 2)
        self.sent += 2
        self._neutral = not phones


def create_app(votes: Votes, sender: Sender | None = None) -> FastAPI:
    app = FastAPI(title="Masquerade crowd", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, response: Response) -> str:
        if not votes.known(request.cookies.get(COOKIE)):
            token = votes.issue(request.client.host if request.client else "?")
            if token is not None:
                response.set_cookie(COOKIE, token, max_age=86400, httponly=True, samesite="strict")
        return PAGE

    @app.post("/api/vote", status_code=202)
    def vote(request: Request, body: dict = Body(...)) -> dict:  # noqa: B008 - FastAPI's own idiom
        token = request.cookies.get(COOKIE)
        if not votes.known(token):
            raise HTTPException(403, "open the page first (it gives this phone its token)")
        try:
            x, y = float(body.get("x")), float(body.get("y"))
        except (TypeError, ValueError):
            raise HTTPException(422, "expected {\"x\": -1..1, \"y\": -1..1}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise HTTPException(422, "x and y must be numbers")
        if not votes.vote(token, max(-1.0, min(1.0, x)), max(-1.0, min(1.0, y))):
            raise HTTPException(429, "too many votes from this phone: one is enough")
        return {"accepted": True}

    @app.get("/api/crowd")
    def crowd() -> dict:
        phones, x, y = votes.mean()
        return {"phones": phones, "x": round(x, 3), "y": round(y, 3),
                "sent": sender.sent if sender is not None else 0}

    return app


def serve(crowd, engine_port) -> tuple[uvicorn.Server, Sender]:
    """Start the crowd page and the OSC sender; `engine_port()` says where the engine listens (None: not
    yet). Set `.should_exit` on the server and `stop()` the sender to end them."""
    votes = Votes(crowd.window, crowd.votes_per_second)
    sender = Sender(votes, crowd, engine_port).start()
    config = uvicorn.Config(create_app(votes, sender), host=crowd.host, port=crowd.port, log_level="warning",
                            access_log=False, limit_concurrency=256, timeout_keep_alive=5, log_config=None)
    server = uvicorn.Server(config)

    def run() -> None:
        try:
            server.run()
        except SystemExit:
            log.error("the crowd page could not start on %s:%d", crowd.host, crowd.port)

    threading.Thread(target=run, name="crowd-page", daemon=True).start()
    log.info("crowd steering on http://%s:%d/ -> OSC %s, %s", crowd.host, crowd.port, crowd.x_address,
             crowd.y_address)
    return server, sender


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, user-scalable=no">
<title>Steer the picture</title>
<style>
html, body { margin: 0; height: 100%; background: #000; color: #ccc; font: 16px system-ui, sans-serif; }
main { display: flex; flex-direction: column; align-items: center; gap: 1em; padding: 1em; }
#pad { width: min(90vw, 70vh); aspect-ratio: 1; border: 1px solid #555; border-radius: 50%; position: relative;
       touch-action: none; }
.dot { position: absolute; width: 12%; height: 12%; border-radius: 50%; transform: translate(-50%, -50%); }
#mine { background: #fc6; left: 50%; top: 50%; } #crowd { background: #6cf8; left: 50%; top: 50%; }
</style></head>
<body><main>
<p>Drag the yellow dot: the picture drifts toward where everyone points. Blue: the crowd.</p>
<div id="pad"><div id="crowd" class="dot"></div><div id="mine" class="dot"></div></div>
<p id="count"></p>
</main>
<script>
const pad = document.getElementById('pad'), mine = document.getElementById('mine');
let pending = null, last = 0;
function place(el, x, y) { el.style.left = (50 + 50 * x) + '%'; el.style.top = (50 - 50 * y) + '%'; }
async function send() {
  if (!pending || Date.now() - last < 250) return;
  const v = pending; pending = null; last = Date.now();
  await fetch('/api/vote', {method: 'POST', headers: {'Content-Type': 'application/json'},
                            body: JSON.stringify(v)}).catch(() => {});
}
pad.addEventListener('pointermove', (e) => {
  if (!e.buttons && e.pointerType === 'mouse') return;
  const r = pad.getBoundingClientRect();
  let x = (e.clientX - r.left) / r.width * 2 - 1, y = 1 - (e.clientY - r.top) / r.height * 2;
  const len = Math.hypot(x, y); if (len > 1) { x /= len; y /= len; }
  place(mine, x, y); pending = {x, y};
});
setInterval(send, 100);
setInterval(async () => {
  const c = await (await fetch('/api/crowd')).json().catch(() => null);
  if (c) { place(document.getElementById('crowd'), c.x, c.y);
           document.getElementById('count').textContent = c.phones + ' phone(s) steering'; }
}, 1000);
</script>
</body></html>
"""
