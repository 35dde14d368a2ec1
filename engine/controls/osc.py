"""OSC over UDP (python-osc): the network input of the control bus, and feedback to the controller.

OSC 1.0 (https://opensoundcontrol.stanford.edu/spec-1_0.html): a datagram holds a message (address, type
tags, arguments) or a bundle (an NTP time tag, then sized elements that are messages or bundles). The
receiver thread filters senders, charges each sender's token bucket per message, parses, checks the values
against the bindings and posts `("osc:" + address, value)` to the bus. It never touches the walk, never
raises and never stops on bad input: anything odd is counted in `stats` (a `ReceiverStats` for the
status page) and logged, at most once a second per kind.

Who may send (docs/osc.md, "Security"): by default only this machine (the socket listens on 127.0.0.1).
A show that opens the port to the network should set a shared `secret`: then every message from a sender
off this machine must be signed, `sign()` below: two extra arguments, an int64 counter (the sender's Unix
time in microseconds) and a 32-byte blob, HMAC-SHA256 (RFC 2104) of the message as encoded with the
counter and without the blob. The counter must be within `MAX_SKEW` of this machine's clock and each
signed message is accepted once, so a captured one cannot be replayed.

Bundles are walked here, not by python-osc's `OscBundle`, which trusts element sizes: a negative size
makes it loop forever. Messages are parsed by python-osc's `OscMessage` after a type-tag check.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
import hmac
import ipaddress
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from pythonosc.osc_message import OscMessage
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from engine.controls.bus import Bus, ControlError, Snapshot

log = logging.getLogger("masquerade.osc")

LOOPBACK = ("127.0.0.0/8", "::1/128")  # this machine: the default, and senders that need no signature
BUNDLE = b"#bundle\x00"
NTP_TO_UNIX = 2_208_988_800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (Unix)
TYPE_TAGS = set("ifdhsbTFN")  # what python-osc parses without complaint and we can judge
MAX_DEPTH = 8  # nested bundles
MAC_SIZE = 32  # HMAC-SHA256
MAX_SKEW = 30.0  # seconds a signed message's counter may be off this machine's clock
MIN_SECRET = 16  # characters


class Malformed(ValueError):
    """A datagram that is not OSC."""


@dataclass
class ReceiverStats:
    """Counters for a status page; `Receiver.stats` returns a copy. docs/osc.md lists them all."""
    packets: int = 0  # datagrams read from the socket
    posted: int = 0  # messages posted to the bus
    scheduled: int = 0  # of those, with a time tag (posted with a show time)
    disallowed: int = 0  # datagrams from senders outside the allowlist
    rate_limited: int = 0  # messages over a sender's rate (a bundle is charged for each of its messages)
    malformed: int = 0  # datagrams that are not OSC (garbage, truncated, bad bundle)
    bad_args: int = 0  # messages whose arguments are not one number or a boolean (or nothing, for a button)
    out_of_range: int = 0  # numbers far outside the binding's input range (2**63 for a 0..1 fader): refused
    too_far_ahead: int = 0  # messages scheduled further ahead than `max_ahead`
    schedule_full: int = 0  # scheduled messages dropped because `max_scheduled` were already waiting
    unauthenticated: int = 0  # with a secret: messages from the network without a valid signature
    replayed: int = 0  # with a secret: signed messages seen before, or with a counter off the clock
    feedback_sent: int = 0
    feedback_errors: int = 0
    errors: int = 0  # unexpected failures handling one datagram (logged with a traceback)


def split(data: bytes) -> list[tuple[float | None, bytes]]:
    """Datagram -> [(unix time or None for "immediately", one message's bytes)], without parsing the
    messages (cheap: a rate limit can charge for them first); raises Malformed."""
    out: list[tuple[float | None, bytes]] = []
    _walk(data, None, out, 0)
    return out


def parse(data: bytes) -> list[tuple[float | None, OscMessage]]:
    """Datagram -> [(unix time or None for "immediately", message)]; raises Malformed."""
    return [(when, _message(body)) for when, body in split(data)]


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
        out.append((when, data))
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
    """A message's arguments -> the number to post (None: not a control value). No arguments is a press
    (the receiver accepts it only for sources bound to triggers)."""
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


def plausible(value: float, binding) -> bool:
    """Within the binding's input range widened by its own width on each side: a fader that overshoots a
    little is clamped as usual, 2**63 or 1e300 on a 0..1 fader is a mistake or an attack, not "the top"."""
    lo, hi = sorted(binding.input)
    width = hi - lo
    return lo - width <= value <= hi + width


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)


def sign(address: str, args, secret: str | bytes, counter: int | None = None) -> bytes:
    """One signed OSC message for a receiver with `secret` (docs/osc.md): the arguments, then `counter`
    (int64; default: now, in Unix microseconds), then the HMAC-SHA256 of the message up to there (blob)."""
    builder = OscMessageBuilder(address)
    for a in args:
        builder.add_arg(a)
    builder.add_arg(int(time.time() * 1e6) if counter is None else int(counter), "h")
    mac = hmac.new(_key(secret), builder.build().dgram, hashlib.sha256).digest()
    builder.add_arg(mac, "b")
    return builder.build().dgram


def _unsigned(data: bytes) -> tuple[bytes, bytes] | None:
    """A signed message's bytes -> (the bytes its MAC covers, the MAC); None if it does not end in
    `,...hb` with a 32-byte blob."""
    end = data.find(b"\x00")
    tags_at = (end // 4 + 1) * 4
    tags_end = data.find(b"\x00", tags_at)
    if end < 0 or tags_end < 0 or not data[tags_at:tags_end].endswith(b"hb"):
        return None
    if len(data) < 36 or int.from_bytes(data[-36:-32], "big") != MAC_SIZE:
        return None
    tags = data[tags_at:tags_end - 1]
    args_at = (tags_end // 4 + 1) * 4
    padded = tags + b"\x00" * (4 - len(tags) % 4)
    return data[:tags_at] + padded + data[args_at:-36], data[-32:]


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
    """Token bucket: `rate` messages a second on average, bursts of up to `burst` (default `rate`)."""
    __slots__ = ("rate", "burst", "tokens", "last")

    def __init__(self, rate: float, now: float, burst: float | None = None, tokens: float | None = None):
        self.rate, self.burst = rate, rate if burst is None else burst
        self.tokens, self.last = self.burst if tokens is None else tokens, now

    def refill(self, now: float) -> float:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        return self.tokens


QUIET = 10.0  # messages a second a sender may always send, whatever the others do (a cue desk, a fader)



def fader_values(bus: Bus, snap: Snapshot):
    """(address, value in the fader's own range, whether that fader set it) for every OSC-bound fader the
    snapshot holds: what feedback and echo send back to controllers."""
    for b in bus.bindings:
        param = bus.params[b.target]
        if b.scheme != "osc" or param.trigger or b.target not in snap.targets:
            continue
        yield b.source[4:], b.unmap(snap.targets[b.target], param), snap.held_by.get(b.target) == b.source


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
        for address, value, own in fader_values(bus, snap):
            if own:
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


MAX_PEERS = 16  # controllers [osc] echo remembers (the newest senders)


class Echo:
    """`[osc] echo`: a param changed from elsewhere is sent to every known controller on its own address (Open
    Stage Control's convention), through the receiver's socket, to the address and port each controller sends
    from, at most `per_second` times a second. Known controllers: the newest `MAX_PEERS` senders of a message
    the receiver posted. The controller that moved an address last is not sent its own move back."""

    def __init__(self, sock: socket.socket, per_second: float = 20.0):
        self.sock, self.interval = sock, 1.0 / per_second
        self.peers: collections.OrderedDict[tuple, None] = collections.OrderedDict()
        self.mover: dict[str, tuple] = {}  # address -> the peer that sent it last
        self._sent: dict[tuple, float] = {}  # (peer, address) -> the value it was sent (or sent us)
        self._next = 0.0

    def heard(self, peer: tuple, addresses: list[str]) -> None:
        peer = tuple(peer[:2])
        self.peers[peer] = None
        self.peers.move_to_end(peer)
        while len(self.peers) > MAX_PEERS:
            gone, _ = self.peers.popitem(last=False)
            self._sent = {k: v for k, v in self._sent.items() if k[0] != gone}
        for address in addresses:
            self.mover[address] = peer

    def update(self, bus: Bus, snap: Snapshot | None, now: float) -> tuple[int, int]:
        if snap is None or not self.peers or now < self._next:
            return 0, 0
        self._next = now + self.interval
        sent = errors = 0
        for address, value, own in fader_values(bus, snap):
            mover = self.mover.get(address) if own else None
            for peer in self.peers:
                key = (peer, address)
                if peer == mover:
                    self._sent[key] = value  # its fader is there already
                    continue
                if key in self._sent and abs(self._sent[key] - value) < 1e-6:
                    continue
                builder = OscMessageBuilder(address)
                builder.add_arg(float(value), "f")
                try:
                    self.sock.sendto(builder.build().dgram, peer)
                    self._sent[key] = value
                    sent += 1
                except OSError as e:  # the controller went away: try again next time
                    log.debug("OSC echo of %s to %s failed: %s", address, peer, e)
                    errors += 1
        return sent, errors


class Receiver:
    """A background thread that turns OSC datagrams into bus events. `start()` and `stop()` explicitly.

    `to_show_time` converts a bundle's time tag (Unix seconds) to show time; without it, time tags are
    ignored and every message applies at the next frame. `feedback=(host, port)` sends values back.
    `secret`: senders outside `trusted` (by default this machine) must sign every message (`sign`).
    """

    def __init__(self, bus: Bus, host: str = "127.0.0.1", port: int = 9000, allow=LOOPBACK,
                 max_per_second: float = 500, feedback: tuple[str, int] | None = None,
                 feedback_per_second: float = 20.0, to_show_time: Callable[[float], float] | None = None,
                 max_ahead: float = 60.0, max_scheduled: int = 1024, secret: str | bytes | None = None,
                 trusted=LOOPBACK, max_total_per_second: float | None = None, names=None, echo: bool = False,
                 commands=None):
        self.bus, self.host, self._port = bus, host, port
        # address -> callable(address, value): engine commands that are no param (`/masq/learn/start`)
        self.commands = dict(commands or {})
        self._echo_on = bool(echo)
        self.echo: Echo | None = None  # made by start() with `echo`: values back to every known controller
        self._touched: list[str] = []  # addresses posted from the datagram being handled (for the echo)
        # address -> {word: number}: a string argument names a number (`/masq/scene/go "drift"` is scene 2)
        self.names = {a: dict(words) for a, words in (names or {}).items()}
        try:
            self.allow = tuple(ipaddress.ip_network(n, strict=False) for n in allow)
            self.trusted = tuple(ipaddress.ip_network(n, strict=False) for n in trusted)
        except ValueError as e:
            raise ControlError(f"[osc] allow: {e}") from None
        if max_total_per_second is None and isinstance(max_per_second, (int, float)):
            max_total_per_second = 8 * max_per_second
        for key, value in (("max_per_second", max_per_second), ("feedback_per_second", feedback_per_second),
                           ("max_ahead", max_ahead), ("max_scheduled", max_scheduled),
                           ("max_total_per_second", max_total_per_second)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ControlError(f"[osc] {key} must be a positive finite number, got {value!r}")
        if secret is not None and len(secret) < MIN_SECRET:
            raise ControlError(f"[osc] secret must be at least {MIN_SECRET} characters (a passphrase, not a PIN)")
        self.max_per_second, self.to_show_time, self.max_ahead = float(max_per_second), to_show_time, max_ahead
        self.max_scheduled = int(max_scheduled)
        self._key = _key(secret) if secret is not None else None
        self._feedback_to, self._feedback_per_second = feedback, feedback_per_second
        self.feedback: Feedback | None = None  # made by start(), closed by stop()
        self._stats = ReceiverStats()
        self._buckets: dict[str, tuple[_Bucket, _Bucket]] = {}  # sender -> (its rate, its quiet lane)
        self._total = _Bucket(float(max_total_per_second), time.monotonic())  # all senders together
        self._allowed: dict[str, tuple[bool, bool]] = {}  # host -> (allowed, trusted)
        self._scheduled: list[float] = []  # heap: show times of the messages this receiver scheduled
        self._seen: set[bytes] = set()  # MACs of signed messages accepted in the last 2 * MAX_SKEW
        self._seen_order: collections.deque[tuple[float, bytes]] = collections.deque()
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
        try:  # room for a burst, so a controller's packet is not lost behind a flood (the kernel caps it)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        except OSError:
            pass
        if self._feedback_to:
            try:
                self.feedback = Feedback(*self._feedback_to, per_second=self._feedback_per_second)
            except OSError as e:  # an unknown host name
                sock.close()
                raise ControlError(f"[osc] feedback {self._feedback_to[0]}:{self._feedback_to[1]}: {e}") from None
        self._sock = sock
        if self._echo_on:
            self.echo = Echo(sock, self._feedback_per_second)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"osc-{self.port}", daemon=True)
        self._thread.start()
        log.info("listening for OSC on udp %s:%d (address space: docs/osc.md)", self.host, self.port)
        if not _loopback(self.host) and all(net.is_loopback for net in self.allow):
            log.warning("OSC listens on %s but [osc] allow admits this machine only: list the controllers' "
                        "addresses in allow", self.host)
        elif self._key is None and not _loopback(self.host):
            log.warning("OSC on %s:%d trusts senders in [osc] allow by their source address alone, which anyone "
                        "on the network can forge: set [osc] secret (docs/osc.md, Security)", self.host, self.port)
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
        self.echo = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _run(self) -> None:
        feedback, echo = self.feedback, self.echo
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
                self._touched = []
                try:
                    self._handle(data, sender[0], now)
                except Exception:  # a bug must not silence the controls for the rest of the show
                    self._stats.errors += 1
                    log.exception("OSC: failed to handle a packet from %s", sender[0])
                if echo is not None and self._touched:
                    echo.heard(sender, self._touched)
            for out in (feedback, echo):
                if out is not None:
                    sent, errors = out.update(self.bus, self.bus.latest, now)
                    self._stats.feedback_sent += sent
                    self._stats.feedback_errors += errors

    def _handle(self, data: bytes, host: str, now: float) -> None:
        s = self._stats
        s.packets += 1
        allowed, trusted = self._sender(host)
        if not allowed:
            s.disallowed += 1
            self._warn("disallowed", "OSC: ignoring %s, which is outside [osc] allow", host)
            return
        if not self._take_tokens(host, now, 1, take=False):  # a flood is dropped before it costs a parse
            s.rate_limited += 1
            self._warn("rate", "OSC: %s sends more than %g messages/s (or all senders more than %g); dropping "
                       "the excess", host, self.max_per_second, self._total.rate)
            return
        try:
            bodies = split(data)
        except Malformed as e:
            s.malformed += 1
            self._warn("malformed", "OSC: malformed packet from %s (%d bytes): %s", host, len(data), e)
            return
        if not self._take_tokens(host, now, len(bodies)):
            s.rate_limited += len(bodies)
            self._warn("rate", "OSC: %s sends more than %g messages/s (or all senders more than %g); dropping "
                       "the excess", host, self.max_per_second, self._total.rate)
            return
        for unix, body in bodies:
            try:
                msg = _message(body)
            except Malformed as e:
                s.malformed += 1
                self._warn("malformed", "OSC: malformed message from %s: %s", host, e)
                continue
            params = msg.params
            if self._key is not None and (not trusted or _unsigned(body) is not None):
                params = self._authentic(body, params, host, now)
                if params is None:
                    continue
            self._post(msg.address, params, unix, host)

    def _authentic(self, body: bytes, params: list, host: str, now: float) -> list | None:
        """A signed message's arguments without the counter and the MAC; None (counted) if it is unsigned,
        forged, stale or a replay."""
        s, signed = self._stats, _unsigned(body)
        if signed is None or not hmac.compare_digest(
                signed[1], hmac.new(self._key, signed[0], hashlib.sha256).digest()):
            s.unauthenticated += 1
            self._warn("auth", "OSC: %s sent a message without a valid signature ([osc] secret); ignored", host)
            return None
        counter, mac = params[-2], signed[1]
        while self._seen_order and now - self._seen_order[0][0] > 2 * MAX_SKEW:
            self._seen.discard(self._seen_order.popleft()[1])
        if mac in self._seen or abs(counter / 1e6 - time.time()) > MAX_SKEW:
            s.replayed += 1
            self._warn("replay", "OSC: %s sent a signed message seen before or off this clock by more than "
                       "%g s; ignored", host, MAX_SKEW)
            return None
        self._seen.add(mac)
        self._seen_order.append((now, mac))
        return params[:-2]

    def _post(self, address: str, params: list, unix: float | None, host: str) -> None:
        s, source = self._stats, "osc:" + address
        command = self.commands.get(address)
        if command is not None:  # an engine command (MIDI learn on / off): no param, never recorded
            value = value_of(params)
            if value is None:
                s.bad_args += 1
                self._warn("args", "OSC: %s %r from %s: expected one number, a boolean, or nothing", address,
                           params, host)
                return
            command(address, value)
            s.posted += 1
            return
        routes = self.bus.routes(source)
        words = self.names.get(address)
        value = words.get(params[0]) if words and len(params) == 1 and isinstance(params[0], str) \
            else value_of(params)
        if value is None or (not params and not all(self.bus.params[b.target].trigger for b in routes)):
            s.bad_args += 1  # no argument is a press: a button's, never a fader's top
            self._warn("args", "OSC: %s %r from %s: expected one number, a boolean, or nothing for a button",
                       address, params, host)
            return
        if not all(plausible(value, b) for b in routes):
            s.out_of_range += 1
            self._warn("range", "OSC: %s %r from %s is far outside its input range; refused", address, value, host)
            return
        at = None
        if unix is not None and self.to_show_time is not None:
            at, current = self.to_show_time(unix), self.to_show_time(time.time())
            if at - current > self.max_ahead:  # a wrong clock on the sender: it would sit in the queue for ever
                s.too_far_ahead += 1
                self._warn("ahead", "OSC: %s scheduled %.0f s ahead; dropped", address, at - current)
                return
            while self._scheduled and self._scheduled[0] <= current:
                heapq.heappop(self._scheduled)
            if len(self._scheduled) >= self.max_scheduled:
                s.schedule_full += 1
                self._warn("schedule", "OSC: %d messages already wait for their time; %s from %s dropped",
                           len(self._scheduled), address, host)
                return
            heapq.heappush(self._scheduled, at)
            s.scheduled += 1
        self.bus.post(source, value, at=at)
        s.posted += 1
        self._touched.append(address)

    def is_allowed(self, host: str) -> bool:
        return self._sender(host)[0]

    def _sender(self, host: str) -> tuple[bool, bool]:
        """(on the allowlist, trusted without a signature) for a sender's address."""
        known = self._allowed.get(host)
        if known is None:
            ip = ipaddress.ip_address(host.split("%")[0])  # drop an IPv6 scope id
            if ip.version == 6 and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            known = (any(ip in net for net in self.allow), any(ip in net for net in self.trusted))
            if len(self._allowed) > 4096:
                self._allowed.clear()
            self._allowed[host] = known
        return known

    def _take_tokens(self, host: str, now: float, n: int, take: bool = True) -> bool:
        """Charge `n` messages: the sender's own rate, and either the total of all senders or, when a
        flood from elsewhere has spent that, the sender's quiet lane (`QUIET` a second): a light sender
        such as a cue desk gets through a flood from any number of other addresses."""
        buckets = self._buckets.get(host)
        if buckets is None:
            if len(self._buckets) > 4096:
                self._buckets.clear()
            buckets = self._buckets[host] = (_Bucket(self.max_per_second, now),
                                             _Bucket(QUIET, now, tokens=1.0))  # new addresses cost a flood
        own, quiet = buckets
        if own.refill(now) < n:
            return False
        lane = self._total if self._total.refill(now) >= n else quiet
        if lane is quiet and quiet.refill(now) < n:
            return False
        if take:
            own.tokens -= n
            lane.tokens -= n
        return True

    def _warn(self, kind: str, message: str, *args) -> None:
        """Log at most once a second per kind: a flood of garbage must not become a flood of log lines."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -math.inf) >= 1.0:
            self._last_warning[kind] = now
            log.warning(message, *args)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
