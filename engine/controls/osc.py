"""OSC over UDP (python-osc): the network input of the control bus, and feedback to the controller.

OSC 1.0 (https://opensoundcontrol.stanford.edu/spec-1_0.html): a datagram holds a message (address, type
tags, arguments) or a bundle (an NTP time tag, then sized elements that are messages or bundles). The
receiver thread filters senders and floods, parses, and posts `("osc:" + address, value)` to the bus. It
never touches the walk, never raises and never stops on bad input: anything odd is counted in `stats`
(a `ReceiverStats` for the status page) and logged, at most once a second per kind.

Bundles are walked here, not by python-osc's `OscBundle`, which trusts element sizes: a negative size
makes it loop forever. Messages are parsed by python-osc's `OscMessage` after a type-tag check.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pythonosc.osc_message import OscMessage
from pythonosc.udp_client import SimpleUDPClient

from engine.controls.bus import Bus, ControlError, Snapshot

log = logging.getLogger("masquerade.osc")

LOCAL_NETWORKS = ("127.0.0.0/8", "::1/128", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
BUNDLE = b"#bundle\x00"
NTP_TO_UNIX = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
TYPE_TAGS = set("ifdhsbTFN")  # what python-osc parses without complaint and we can judge
MAX_DEPTH = 8  # nested bundles


class Malformed(ValueError):
    """A datagram that is not OSC."""


@dataclass
class ReceiverStats:
    """Counters for a status page; `Receiver.stats` returns a copy."""
    packets: int = 0  # datagrams read from the socket
    posted: int = 0  # messages posted to the bus
    scheduled: int = 0  # of those, with a time tag (posted with a show time)
    disallowed: int = 0  # datagrams from senders outside the allowlist
    rate_limited: int = 0  # datagrams over a sender's rate
    malformed: int = 0  # datagrams that are not OSC (garbage, truncated, bad bundle)
    bad_args: int = 0  # messages whose arguments are not one number, a boolean, or nothing
    too_far_ahead: int = 0  # messages scheduled further ahead than `max_ahead`
    feedback_sent: int = 0
    feedback_errors: int = 0
    errors: int = 0  # unexpected failures handling one datagram (logged with a traceback)


def parse(data: bytes) -> list[tuple[float | None, OscMessage]]:
    """Datagram -> [(unix time or None for "immediately", message)]; raises Malformed."""
    out: list[tuple[float | None, OscMessage]] = []
    _walk(data, None, out, 0)
    return out


def _walk(data: bytes, when: float | None, out: list, depth: int) -> None:
    if data.startswith(BUNDLE):
        if depth >= MAX_DEPTH or len(data) < 16:
            raise Malformed("bundle too deep or too short")
        tag = int.from_bytes(data[8:16], "big")
        if tag > 1:  # 1 means "immediately" (and 0, which no one means, too): keep the outer bundle's time
            when = tag / 2**32 - NTP_TO_UNIX
        i = 16
        while i < len(data):
            size = int.from_bytes(data[i:i + 4], "big", signed=True) if i + 4 <= len(data) else -1
            if size <= 0 or size % 4 or i + 4 + size > len(data):
                raise Malformed(f"bundle element at byte {i} has a bad size")
            _walk(data[i + 4:i + 4 + size], when, out, depth + 1)
            i += 4 + size
    elif data.startswith(b"/"):
        out.append((when, _message(data)))
    else:
        raise Malformed("neither an OSC message nor a bundle")


def _message(data: bytes) -> OscMessage:
    end = data.find(b"\x00")
    if end < 0:
        raise Malformed("address is not terminated")
    tags_at = (end // 4 + 1) * 4
    if tags_at < len(data):
        tags_end = data.find(b"\x00", tags_at)
        tags = data[tags_at:tags_end if tags_end >= 0 else len(data)]
        if not tags.startswith(b",") or not set(tags[1:].decode("latin-1")) <= TYPE_TAGS:
            raise Malformed(f"unsupported type tags {tags!r}")
    try:
        return OscMessage(data)
    except Exception as e:  # python-osc raises several types (ParseError, UnicodeDecodeError, IndexError)
        raise Malformed(str(e)) from None


def value_of(params: list) -> float | None:
    """A message's arguments -> the number to post (None: not a control value). No arguments is a press."""
    if not params:
        return 1.0
    if len(params) != 1:
        return None
    (v,) = params
    if isinstance(v, bool):
        return 1.0 if v else 0.0
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    return None


def show_time_from_unix(show_time: Callable[[], float], now: Callable[[], float] = time.time):
    """A converter for bundle time tags: Unix time -> show time, given the loop's clock (`clock.time`)."""
    return lambda unix: show_time() + (unix - now())


def parse_address(text: str, where: str = "[osc] feedback") -> tuple[str, int]:
    """'192.168.1.20:9001' or '[::1]:9001' -> (host, port), for the show file's `feedback` key."""
    host, colon, port = str(text).rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ControlError(f"{where} must be \"host:port\", like \"192.168.1.20:9001\", got {text!r}")
    return host, int(port)


class _Bucket:
    """Token bucket: `rate` datagrams a second on average, bursts of up to `rate`."""
    __slots__ = ("tokens", "last")

    def __init__(self, rate: float, now: float):
        self.tokens, self.last = rate, now


class Feedback:
    """Sends param values back to a controller, so its faders follow changes made elsewhere (a cue, another
    fader, the camera), at most `per_second` times a second. A param held by the very address a fader sends
    on is not echoed: the fader is already there, and an echo would fight the hand moving it."""

    def __init__(self, host: str, port: int, per_second: float = 20.0):
        self.client = SimpleUDPClient(host, port)
        self.interval = 1.0 / per_second
        self._next = 0.0
        self._sent: dict[str, float] = {}

    def update(self, bus: Bus, snap: Snapshot | None, now: float) -> tuple[int, int]:
        """Send what changed, if it is time; returns (messages sent, send errors)."""
        if snap is None or now < self._next:
            return 0, 0
        self._next = now + self.interval
        sent = errors = 0
        for b in bus.bindings:
            param = bus.params[b.target]
            if b.scheme != "osc" or param.trigger or b.target not in snap.targets:
                continue
            address, value = b.source[4:], b.unmap(snap.targets[b.target], param)
            if snap.held_by.get(b.target) == b.source:
                self._sent[address] = value  # the fader itself set it
                continue
            if address in self._sent and abs(self._sent[address] - value) < 1e-6:
                continue
            try:
                self.client.send_message(address, value)
                self._sent[address] = value
                sent += 1
            except OSError as e:  # the controller went away: try again next time
                log.debug("OSC feedback to %s failed: %s", address, e)
                errors += 1
        return sent, errors

    def close(self) -> None:
        self.client.close()


class Receiver:
    """A background thread that turns OSC datagrams into bus events. `start()` and `stop()` explicitly.

    `to_show_time` converts a bundle's time tag (Unix seconds) to show time; without it, time tags are
    ignored and every message applies at the next frame. `feedback=(host, port)` sends values back.
    """

    def __init__(self, bus: Bus, host: str = "0.0.0.0", port: int = 9000, allow=LOCAL_NETWORKS,
                 max_per_second: float = 500, feedback: tuple[str, int] | None = None,
                 feedback_per_second: float = 20.0, to_show_time: Callable[[float], float] | None = None,
                 max_ahead: float = 60.0):
        self.bus, self.host, self._port = bus, host, port
        try:
            self.allow = tuple(ipaddress.ip_network(n, strict=False) for n in allow)
        except ValueError as e:
            raise ControlError(f"[osc] allow: {e}") from None
        if max_per_second <= 0:
            raise ControlError(f"[osc] max_per_second must be positive, got {max_per_second}")
        self.max_per_second, self.to_show_time, self.max_ahead = float(max_per_second), to_show_time, max_ahead
        self._feedback_to, self._feedback_per_second = feedback, feedback_per_second
        self.feedback: Feedback | None = None  # made by start(), closed by stop()
        self._stats = ReceiverStats()
        self._buckets: dict[str, _Bucket] = {}
        self._allowed: dict[str, bool] = {}
        self._last_warning: dict[str, float] = {}
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def port(self) -> int:
        """The port it listens on (the one the system picked, after `start()` with port 0)."""
        return self._sock.getsockname()[1] if self._sock else self._port

    @property
    def stats(self) -> ReceiverStats:
        return replace(self._stats)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Receiver:
        if self.running:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((self.host, self._port))
        except OSError as e:
            sock.close()
            raise ControlError(f"[osc] cannot listen on {self.host}:{self._port}: {e.strerror or e}") from None
        sock.settimeout(0.02)  # how often the thread looks at the stop flag and the feedback clock
        if self._feedback_to:
            try:
                self.feedback = Feedback(*self._feedback_to, per_second=self._feedback_per_second)
            except OSError as e:  # an unknown host name
                sock.close()
                raise ControlError(f"[osc] feedback {self._feedback_to[0]}:{self._feedback_to[1]}: {e}") from None
        self._sock = sock
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"osc-{self.port}", daemon=True)
        self._thread.start()
        log.info("listening for OSC on udp %s:%d (address space: docs/osc.md)", self.host, self.port)
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self.feedback is not None:
            self.feedback.close()
            self.feedback = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        feedback = self.feedback
        while not self._stop.is_set():
            try:
                data, sender = self._sock.recvfrom(65536)
            except TimeoutError:
                data = None
            except OSError as e:  # a closed socket at shutdown, or an ICMP error: keep listening
                if self._stop.is_set():
                    break
                self._warn("socket", "OSC: receive failed: %s", e)
                continue
            now = time.monotonic()
            if data is not None:
                try:
                    self._handle(data, sender[0], now)
                except Exception:  # a bug must not silence the controls for the rest of the show
                    self._stats.errors += 1
                    log.exception("OSC: failed to handle a packet from %s", sender[0])
            if feedback is not None:
                sent, errors = feedback.update(self.bus, self.bus.latest, now)
                self._stats.feedback_sent += sent
                self._stats.feedback_errors += errors

    def _handle(self, data: bytes, host: str, now: float) -> None:
        s = self._stats
        s.packets += 1
        if not self._is_allowed(host):
            s.disallowed += 1
            self._warn("disallowed", "OSC: ignoring %s, which is outside [osc] allow", host)
            return
        if not self._take_token(host, now):
            s.rate_limited += 1
            self._warn("rate", "OSC: %s sends more than %g packets/s; dropping the excess", host,
                       self.max_per_second)
            return
        try:
            messages = parse(data)
        except Malformed as e:
            s.malformed += 1
            self._warn("malformed", "OSC: malformed packet from %s (%d bytes): %s", host, len(data), e)
            return
        for unix, msg in messages:
            value = value_of(msg.params)
            if value is None:
                s.bad_args += 1
                self._warn("args", "OSC: %s %r from %s: expected one number, a boolean or nothing", msg.address,
                           msg.params, host)
                continue
            at = None
            if unix is not None and self.to_show_time is not None:
                at = self.to_show_time(unix)
                ahead = at - self.to_show_time(time.time())
                if ahead > self.max_ahead:  # a wrong clock on the sender: it would sit in the queue for ever
                    s.too_far_ahead += 1
                    self._warn("ahead", "OSC: %s scheduled %.0f s ahead; dropped", msg.address, ahead)
                    continue
                s.scheduled += 1
            self.bus.post("osc:" + msg.address, value, at=at)
            s.posted += 1

    def _is_allowed(self, host: str) -> bool:
        allowed = self._allowed.get(host)
        if allowed is None:
            ip = ipaddress.ip_address(host.split("%")[0])  # drop an IPv6 scope id
            if ip.version == 6 and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            allowed = any(ip in net for net in self.allow)
            if len(self._allowed) > 4096:
                self._allowed.clear()
            self._allowed[host] = allowed
        return allowed

    def _take_token(self, host: str, now: float) -> bool:
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) > 4096:
                self._buckets.clear()
            bucket = self._buckets[host] = _Bucket(self.max_per_second, now)
        bucket.tokens = min(self.max_per_second, bucket.tokens + (now - bucket.last) * self.max_per_second)
        bucket.last = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True

    def _warn(self, kind: str, message: str, *args) -> None:
        """Log at most once a second per kind: a flood of garbage must not become a flood of log lines."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -math.inf) >= 1.0:
            self._last_warning[kind] = now
            log.warning(message, *args)
