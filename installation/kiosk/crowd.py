"""Crowd steering: visitors' phones vote a direction; the engine steers by the mean of recent votes.

Off unless the site file says `[crowd] enabled = true`. Its own port (8081), its own small app in the
supervisor's process (no torch): `GET /` (the phone page: drag a dot in a square; it hands the phone a
random token in a cookie), `POST /api/vote` with `{"x": -1..1, "y": -1..1}` (the cookie is needed), and
`GET /api/crowd` (the mean and how many phones count). Nothing else: the staff controls live on the
status page's port only, so `/api/restart` here is 404.

Each phone counts once: its latest vote, for `window` seconds. A phone may vote `votes_per_second` times
a second (more: 429, not counted), and one address may take at most `TOKENS_PER_MINUTE` new tokens and
hold `TOKENS_PER_ADDRESS` per phone it may count as: an address counts as `phones_per_address` phones at
most (its latest votes), votes at most `votes_per_second` x `phones_per_address` a second, so cookies
(cleared, farmed or forged) buy no votes. A token nobody votes with for `forget_after` seconds is
forgotten (the page hands out a new one); when `MAX_PHONES` tokens are held, a new one takes the place of
the longest-silent token only if that one has not voted within `window`: a phone that is steering is
never pushed out. A vote is two numbers in -1..1: anything else is 400 (a number that does not fit: too
big for a float, inf, NaN, out of range) or 422 (not a vote), with the reason; bodies are capped
(installation/kiosk/web.py). A sender thread sends the mean `send_per_second` times a second
to the engine's OSC port (the one its heartbeat reports) over loopback: x on `x_address`, y on
`y_address`, each mapped from -1..1 to the fader range 0..1 (0.5: no push). With the default addresses
`/masq/direction/1` and `/2` the show needs `[latent] directions = 2` or more (docs/osc.md); when every
vote has expired it sends 0.5 once, so the walk lets go.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import threading
import time
from collections import OrderedDict, deque

import uvicorn
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from pythonosc.udp_client import SimpleUDPClient

from installation.kiosk import web

log = logging.getLogger("kiosk.crowd")

COOKIE = "masq-crowd"
MAX_PHONES = 5000  # tokens held at most (see the module's docstring for who gives way)
TOKENS_PER_MINUTE = 20  # new tokens one address may take
TOKENS_PER_ADDRESS = 4  # tokens one address may hold per phone it counts as (a new one retires its oldest)
MAX_BODY = 2048  # bytes of a vote's body


class Votes:
    """Each phone's latest vote, counted at most `per_address` times per address, and the rate limits;
    thread-safe. Times are `clock()` seconds."""

    def __init__(self, window: float, per_second: float, forget_after: float = 600.0, per_address: int = 1,
                 clock=time.monotonic, max_phones: int = MAX_PHONES):
        self.window, self.interval, self.clock = window, 1.0 / per_second, clock
        self.forget_after, self.per_address, self.max_phones = forget_after, per_address, max_phones
        self.lock = threading.Lock()
        self.tokens: OrderedDict[str, float] = OrderedDict()  # token -> last vote (or issue), longest silent first
        self.voted: dict[str, float] = {}  # token -> time of its last counted vote
        self.owner: dict[str, str] = {}  # token -> the address it was issued to
        self.held: dict[str, deque] = {}  # address -> its tokens, oldest first
        self.issued: dict[str, deque] = {}  # address -> times tokens were issued to it (last minute)
        self.votes: dict[str, OrderedDict] = {}  # address -> {token: (time, x, y)}, its latest per_address votes
        self.budget: dict[str, tuple[float, float]] = {}  # address -> (votes it may send now, when that was)
        self.refused = 0

    def issue(self, address: str) -> str | None:
        """A new token for a phone at `address`; None when the address took too many this minute, or the
        table is full of phones that are steering."""
        now = self.clock()
        with self.lock:
            self._expire(now)
            times = self.issued.setdefault(address, deque())
            while times and now - times[0] > 60:
                times.popleft()
            if len(times) >= TOKENS_PER_MINUTE:
                return None
            if len(self.issued) > self.max_phones:  # forget addresses quiet for a minute
                for quiet in [a for a, t in self.issued.items() if not t or now - t[-1] > 60]:
                    del self.issued[quiet]
            held = self.held.setdefault(address, deque())
            if len(held) >= TOKENS_PER_ADDRESS * self.per_address:
                self._forget(held[0])  # the address's own oldest token makes room
            if len(self.tokens) >= self.max_phones:
                oldest = next(iter(self.tokens))
                if now - self.voted.get(oldest, float("-inf")) <= self.window:
                    return None  # every phone held is steering: none is pushed out
                self._forget(oldest)
            times.append(now)
            token = secrets.token_urlsafe(16)
            self.tokens[token], self.owner[token] = now, address
            self.held.setdefault(address, deque()).append(token)
            return token

    def _forget(self, token: str) -> None:
        self.tokens.pop(token, None)
        self.voted.pop(token, None)
        address = self.owner.pop(token, None)
        held = self.held.get(address)
        if held is not None:
            try:
                held.remove(token)
            except ValueError:
                pass
            if not held:
                del self.held[address]

    def _expire(self, now: float) -> None:
        while self.tokens:
            token, last = next(iter(self.tokens.items()))
            if now - last <= self.forget_after:
                break
            self._forget(token)

    def known(self, token: str | None) -> bool:
        with self.lock:
            self._expire(self.clock())
            return token is not None and token in self.tokens

    def vote(self, token: str, address: str, x: float, y: float) -> bool:
        """Count the vote; False when the phone or its address votes too often (or the token is unknown)."""
        now = self.clock()
        with self.lock:
            self._expire(now)
            last = self.tokens.get(token)
            if last is None or now - self.voted.get(token, float("-inf")) < self.interval:
                self.refused += 1
                return False
            allowed, then = self.budget.get(address, (float(self.per_address), now))
            allowed = min(float(self.per_address), allowed + (now - then) / self.interval * self.per_address)
            if allowed < 1:
                self.budget[address] = (allowed, now)
                self.refused += 1
                return False
            self.budget[address] = (allowed - 1, now)
            if len(self.budget) > self.max_phones:  # forget addresses whose budget is full again
                for full in [a for a, (n, t) in self.budget.items() if now - t > self.interval]:
                    del self.budget[full]
            self.tokens[token] = self.voted[token] = now
            self.tokens.move_to_end(token)
            for votes in self.votes.values():  # a phone that moved to another address counts there only
                votes.pop(token, None)
            votes = self.votes.setdefault(address, OrderedDict())
            votes[token] = (now, x, y)
            while len(votes) > self.per_address:
                votes.popitem(last=False)
            return True

    def mean(self) -> tuple[int, float, float]:
        """(phones, mean x, mean y) over each phone's latest vote within the window."""
        now = self.clock()
        with self.lock:
            counted = []
            for address in list(self.votes):
                votes = self.votes[address]
                for token in [k for k, (t, _, _) in votes.items() if now - t > self.window]:
                    del votes[token]
                if not votes:
                    del self.votes[address]
                counted += votes.values()
            if not counted:
                return 0, 0.0, 0.0
            n = len(counted)
            return n, sum(v[1] for v in counted) / n, sum(v[2] for v in counted) / n


def parse_vote(body: bytes) -> tuple[float, float]:
    """(x, y) from a vote's JSON body, each in -1..1; else HTTPException 422 (not a vote) or 400 (a number
    that does not fit), with the reason on one line."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (or not UTF-8), or nested past what json reads
        raise HTTPException(422, 'expected JSON: {"x": -1..1, "y": -1..1}') from None
    if not isinstance(data, dict) or not all(type(data.get(k)) in (int, float) for k in ("x", "y")):
        raise HTTPException(422, 'expected {"x": -1..1, "y": -1..1} (two numbers)')
    try:
        x, y = float(data["x"]), float(data["y"])
    except OverflowError:
        raise HTTPException(400, "x and y must be numbers in -1..1: one is too big for a float") from None
    if not (math.isfinite(x) and math.isfinite(y)):
        raise HTTPException(400, "x and y must be finite numbers in -1..1")
    if max(abs(x), abs(y)) > 1 + 1e-6:
        raise HTTPException(400, f"x and y must be in -1..1, got {x:.6g}, {y:.6g}")
    return max(-1.0, min(1.0, x)), max(-1.0, min(1.0, y))


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

    def address(request: Request) -> str:
        return request.client.host if request.client else "?"

    @app.get("/", response_class=HTMLResponse)
    def page(request: Request, response: Response) -> str:
        if not votes.known(request.cookies.get(COOKIE)):
            token = votes.issue(address(request))
            if token is not None:
                response.set_cookie(COOKIE, token, max_age=round(votes.forget_after), httponly=True,
                                    samesite="strict")
        return PAGE

    @app.post("/api/vote", status_code=202)
    async def vote(request: Request, response: Response) -> dict:
        token = request.cookies.get(COOKIE)
        if not votes.known(token):
            raise HTTPException(403, "open the page first (it gives this phone its token)")
        x, y = parse_vote(await request.body())  # at most MAX_BODY bytes (web.Guard)
        if not votes.vote(token, address(request), x, y):
            raise HTTPException(429, "too many votes from this phone (or its address): one is enough")
        response.set_cookie(COOKIE, token, max_age=round(votes.forget_after), httponly=True, samesite="strict")
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
    votes = Votes(crowd.window, crowd.votes_per_second, crowd.forget_after, crowd.phones_per_address)
    sender = Sender(votes, crowd, engine_port).start()
    app = web.Guard(create_app(votes, sender), MAX_BODY)  # bodies capped before they are read
    config = uvicorn.Config(app, host=crowd.host, port=crowd.port,
                            **web.config_kwargs(per_address=16, connections=256))
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
  const r = await fetch('/api/vote', {method: 'POST', headers: {'Content-Type': 'application/json'},
                                      body: JSON.stringify(v)}).catch(() => null);
  if (r && r.status === 403) await fetch('/').catch(() => {});  // its token was forgotten: take a new one
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
