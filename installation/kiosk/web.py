"""What both kiosk pages (the status page, the crowd page) put between the network and their app.

`Guard` (ASGI, before the app sees a request): a token check where the page asks for one, then the body,
read by the guard itself: refused on its Content-Length, counted as it streams (chunked bodies too), and
given `body_seconds` to arrive, so the app never parses more than `max_body` bytes and nobody learns
anything, or makes the kiosk read anything, without the token. The answers are one-line JSON, as
FastAPI's: `{"detail": "..."}` (401, 408, 413), and close the connection.

`protocol(...)`: uvicorn's h11 protocol with three limits uvicorn lacks, so that half-open connections
(a "slowloris": connections that never finish their headers) cannot keep anyone out:
  - a request's headers must arrive within `header_seconds` of the connection or of the last answer;
  - at most `per_address` connections from one address: a new one closes that address's oldest
    connection that is waiting for headers (or, if none waits, is itself closed);
  - at most `connections` in all: a new one closes the oldest waiting connection from anywhere.
A request whose headers are in is never closed for room; uvicorn's own `limit_concurrency` (which counts
idle and half-open connections, and answers 503 to everybody once they fill it) is left off.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("kiosk.web")

HEADER_SECONDS = 10.0  # a request's headers must be in this long after the connection (or the last answer)
BODY_SECONDS = 10.0  # and its body this long after its headers
MAX_HEADERS = 8 * 1024  # bytes of request line and headers (h11's incomplete-event limit): more is a 400


async def answer(send, status: int, detail: str, headers: dict | None = None) -> None:
    """A one-line JSON answer that closes the connection (its body, if any, is left unread)."""
    body = json.dumps({"detail": detail}).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
           (b"connection", b"close")] + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """ASGI middleware: `refuse(scope) -> (status, detail, headers) | None` first (the token; it sees the
    request line and headers only), then the body, capped and timed, handed on to `app` in one piece."""

    def __init__(self, app, max_body: int, refuse=None, body_seconds: float = BODY_SECONDS):
        self.app, self.max_body, self.refuse, self.body_seconds = app, max_body, refuse, body_seconds

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.refuse is not None and (why := self.refuse(scope)) is not None:
            return await answer(send, *why)
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body
            except ValueError:  # h11 has refused it already; never trust it here
                return await answer(send, 400, "Content-Length is not a number")
            if too_big:
                return await answer(send, 413, f"the body is over {self.max_body} bytes")
        body, more = bytearray(), True
        deadline = asyncio.get_running_loop().time() + self.body_seconds
        while more and (declared is not None or b"chunked" in headers.get(b"transfer-encoding", b"").lower()):
            try:
                message = await asyncio.wait_for(receive(), deadline - asyncio.get_running_loop().time())
            except TimeoutError:
                return await answer(send, 408, f"the body did not arrive within {self.body_seconds:g} s")
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body:
                return await answer(send, 413, f"the body is over {self.max_body} bytes")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # the app waits for a disconnect: pass it on
            replayed = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        return await self.app(scope, replay, send)


def protocol(header_seconds: float = HEADER_SECONDS, per_address: int = 16, connections: int = 128):
    """A uvicorn `http=` protocol class with its own count of connections (one class per server)."""

    class Guarded(H11Protocol):
        waiting: dict[Guarded, None] = {}  # connections waiting for a request's headers, oldest first
        addresses: Counter = Counter()
        count = 0

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            cls = type(self)
            self._address = self.client[0] if self.client else "?"
            self._timer, self._counted = None, True
            cls.count += 1
            cls.addresses[self._address] += 1
            self._wait()
            if cls.addresses[self._address] > per_address:
                self._make_room([c for c in cls.waiting if c._address == self._address])
            if cls.count > connections:
                self._make_room(list(cls.waiting))

        def _make_room(self, candidates: list) -> None:
            """Close the oldest waiting connection among `candidates` other than this one; else this one."""
            victim = next((c for c in candidates if c is not self), self)
            victim._close()

        def connection_lost(self, exc) -> None:
            self._release()
            super().connection_lost(exc)

        def _release(self) -> None:
            """Out of the counts, at once when this side closes (asyncio reports the loss a turn later)."""
            self._done_waiting()
            if self._counted:
                self._counted = False
                cls = type(self)
                cls.count -= 1
                cls.addresses[self._address] -= 1
                if cls.addresses[self._address] <= 0:
                    del cls.addresses[self._address]

        def _wait(self) -> None:
            """From now on a request's headers are due within `header_seconds`."""
            self._done_waiting()
            type(self).waiting[self] = None
            self._timer = self.loop.call_later(header_seconds, self._close)

        def _done_waiting(self) -> None:
            type(self).waiting.pop(self, None)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _close(self) -> None:
            self._release()
            if not self.transport.is_closing():
                self.transport.close()

        def handle_events(self) -> None:
            cycle = self.cycle
            super().handle_events()
            if self.cycle is not cycle:  # a request's headers are in
                self._done_waiting()

        def on_response_complete(self) -> None:
            cycle = self.cycle
            super().on_response_complete()
            if self.cycle is cycle and not self.transport.is_closing():
                self._wait()

    return Guarded


def config_kwargs(**limits) -> dict:
    """The uvicorn.Config arguments both pages share: the guarded protocol, no websockets, short keep-alive,
    small headers, no concurrency limit of uvicorn's own (see the module's docstring)."""
    return dict(http=protocol(**limits), ws="none", timeout_keep_alive=5, h11_max_incomplete_event_size=MAX_HEADERS,
                limit_concurrency=None, log_level="warning", access_log=False, log_config=None)
