"""DMX in: Art-Net (ArtDmx, UDP 6454) and sACN (ANSI E1.31, UDP 5568, multicast or unicast) as `dmx:*` sources.

A lighting desk patches Masquerade like a fixture: one universe, channels from `start`. Channel c of
universe u is the bus source `dmx:u/c` (channels count from 1, as on the desk), posted as level / 255, so
the default binding input `[0, 1]` maps 0 to the param's minimum and 255 to its maximum, as a MIDI CC does.
Only bound channels are posted, and only when their level changes.

Packets (Art-Net 4 spec, "ArtDmx"; ANSI E1.31-2018 section 4-7):
- Art-Net: "Art-Net\\0", OpCode 0x5000 (little-endian), ProtVer >= 14, Sequence, Physical, SubUni, Net,
  Length (big-endian, 1..512), then exactly Length levels. The universe is the 15-bit Port-Address
  (Net << 8 | SubUni, 0..32767). Other opcodes (ArtPoll, ArtSync ...) are valid and ignored.
- sACN: the ACN root layer (preamble 0x0010, "ASC-E1.17"), vector 4 (data; 8, sync and discovery, is
  ignored), then the framing and DMP layers, parsed by the `sacn` package's `DataPacket.make_data_packet`
  (it checks the three vectors and the universe 1..63999, priority 0..200); the property count must match
  the packet's length; a start code other than 0 (per-channel priority, text) is ignored, so is preview
  data. A stream-terminated packet releases the universe's sources at once.
Sequence numbers (both): a packet 1..19 behind the last one is late and dropped, as E1.31 6.7.2 says
(Art-Net's 0 means "not sequenced"). Every malformed packet is counted in `stats.malformed` and dropped;
nothing a sender does raises in the receiver thread.

Why not the libraries' receivers: `sacn.sACNreceiver` binds every interface whatever it is given on Linux,
never reports the sender's address (so no allowlist is possible) and joins a non-daemon thread without a
timeout; `stupidArtnet.StupidArtnetServer` starts a thread in its constructor on every interface, blocks
in `recvfrom` with no way to stop it, shares its listener list between instances (a class attribute) and
does not check the length field. Here one thread reads both sockets with a bounded `select`, filters
senders through the same allowlist and token bucket as OSC (`engine.controls.gate`), and stops within
50 ms. The packet parsers are pure functions, tested without sockets.

As every `Source`: a port that cannot be opened (in use, no such interface) is "lost" with the reason and
tried again with back-off. When a universe stops arriving for `timeout` seconds (E1.31's 2.5 s network
data loss) its sources are released and the params hold where they are.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import select
import socket
import time
from dataclasses import dataclass

from sacn.messages.data_packet import DataPacket, calculate_multicast_addr

from engine.controls.bus import ControlError
from engine.controls.gate import LOOPBACK, Allowlist, RateLimit
from engine.controls.source import DeviceLost, Source, SourceStats

log = logging.getLogger("masquerade.dmx")

ARTNET_PORT, SACN_PORT = 6454, 5568
PROTOCOLS = ("artnet", "sacn", "both")
CHANNELS = 512
ARTNET_UNIVERSES = (0, 32767)  # the 15-bit Port-Address
SACN_UNIVERSES = (1, 63999)
ART_ID = b"Art-Net\x00"
OP_DMX = 0x5000
ART_HEADER = 18
ACN_ID = b"ASC-E1.17\x00\x00\x00"
VECTOR_ROOT_DATA, VECTOR_ROOT_EXTENDED = 0x04, 0x08
SACN_HEADER = 126  # bytes up to and including the start code
LATE = 20  # a sequence number 1..19 behind the last is a late packet (E1.31 6.7.2)
MAX_DATAGRAM = 2048


class Malformed(ValueError):
    """Not a packet of the protocol it came in on: wrong header, wrong length, a field out of range."""


@dataclass(frozen=True)
class Frame:
    """One universe's levels from one packet."""
    universe: int
    sequence: int  # 0: not sequenced (Art-Net)
    levels: bytes  # channel 1 first; may be shorter than 512 (the rest are not sent, not zero)
    terminated: bool = False  # sACN: the sender says this stream ends


def parse_artnet(data: bytes) -> Frame | None:
    """An Art-Net datagram -> its ArtDmx frame; None for a valid Art-Net packet of another kind; raises
    Malformed for anything else."""
    if len(data) < 10 or not data.startswith(ART_ID):
        raise Malformed("no Art-Net header")
    if int.from_bytes(data[8:10], "little") != OP_DMX:
        return None  # ArtPoll, ArtSync, ArtAddress ...: not levels
    if len(data) < ART_HEADER:
        raise Malformed(f"ArtDmx shorter than its {ART_HEADER}-byte header ({len(data)} bytes)")
    version = int.from_bytes(data[10:12], "big")
    if version < 14:
        raise Malformed(f"Art-Net protocol version {version} (14 or later expected)")
    net, subuni = data[15], data[14]
    if net > 0x7F:
        raise Malformed(f"Net {net} is out of range 0..127")
    length = int.from_bytes(data[16:18], "big")
    if not 1 <= length <= CHANNELS:
        raise Malformed(f"ArtDmx length {length} is out of range 1..{CHANNELS}")
    if len(data) != ART_HEADER + length:
        raise Malformed(f"ArtDmx says {length} channels but carries {len(data) - ART_HEADER}")
    return Frame(net << 8 | subuni, data[12], bytes(data[ART_HEADER:]))


def parse_sacn(data: bytes) -> Frame | None:
    """An sACN (E1.31) datagram -> its frame; None for a valid packet that carries no levels (sync,
    discovery, a non-zero start code, preview data); raises Malformed for anything else."""
    if len(data) < 22 or data[0:2] != b"\x00\x10" or data[4:16] != ACN_ID:
        raise Malformed("no ACN root layer (preamble and \"ASC-E1.17\")")
    vector = int.from_bytes(data[18:22], "big")
    if vector == VECTOR_ROOT_EXTENDED:
        return None  # synchronization or universe discovery
    if len(data) < SACN_HEADER:
        raise Malformed(f"E1.31 data packet shorter than {SACN_HEADER} bytes ({len(data)})")
    try:
        packet = DataPacket.make_data_packet(data)
    except (TypeError, ValueError) as e:  # the library's way of saying: wrong vector, field out of range
        raise Malformed(f"E1.31: {e}") from None
    count = int.from_bytes(data[123:125], "big")  # property values, the start code included
    if not 1 <= count <= CHANNELS + 1 or len(data) != SACN_HEADER - 1 + count:
        raise Malformed(f"E1.31 property count {count} does not match the packet ({len(data)} bytes)")
    if packet.dmxStartCode != 0 or packet.option_PreviewData:
        return None
    return Frame(packet.universe, packet.sequence, bytes(data[SACN_HEADER:]), packet.option_StreamTerminated)


PARSERS = {"artnet": parse_artnet, "sacn": parse_sacn}


def parse_source(text: str) -> tuple[int, int] | None:
    """`dmx:1/17` (or `1/17`) -> (1, 17); None if it is not universe/channel in whole numbers."""
    rest = text[4:] if text.startswith("dmx:") else text
    universe, slash, channel = rest.partition("/")
    if not slash or not universe.isdigit() or not channel.isdigit() or not universe.isascii():
        return None
    return int(universe), int(channel)


def check_host(host: str, where: str = "[dmx] host") -> None:
    """An interface address to listen on ("0.0.0.0", "127.0.0.1", "::1", a NIC's address)."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ControlError(f"{where} must be an IP address to listen on (\"127.0.0.1\": this machine, "
                           f"\"0.0.0.0\": every interface), got {host!r}") from None


def check(protocol: str, universe, start, channels, timeout, max_per_second, where: str = "[dmx]") -> None:
    """Raise ControlError naming the key for a setting that cannot work (used by the show and the input)."""
    if protocol not in PROTOCOLS:
        raise ControlError(f"{where} protocol must be \"artnet\", \"sacn\" or \"both\", got {protocol!r}")
    lo = ARTNET_UNIVERSES[0] if protocol == "artnet" else SACN_UNIVERSES[0]
    hi = SACN_UNIVERSES[1] if protocol == "sacn" else ARTNET_UNIVERSES[1]
    for key, value, low, high in (("universe", universe, lo, hi), ("start", start, 1, CHANNELS),
                                  ("channels", channels, 1, CHANNELS)):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ControlError(f"{where} {key} must be a whole number {low}..{high} for {protocol}, got {value!r}")
    if start + channels - 1 > CHANNELS:
        raise ControlError(f"{where} start + channels - 1 must be at most {CHANNELS}, got {start} + {channels} - 1")
    for key, value in (("timeout", timeout), ("max_per_second", max_per_second)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise ControlError(f"{where} {key} must be a positive finite number, got {value!r}")


@dataclass
class DmxStats(SourceStats):
    """`Source`'s counters plus the network's; docs/inputs.md lists them."""
    packets: int = 0  # datagrams read
    frames: int = 0  # level packets of our universe applied
    disallowed: int = 0  # from senders outside `allow`
    rate_limited: int = 0  # over a sender's `max_per_second`
    malformed: int = 0  # wrong header, wrong length, a field out of range
    ignored: int = 0  # valid packets without levels: ArtPoll, sACN sync, other start codes, preview
    other_universe: int = 0  # levels for a universe this show does not listen to
    late: int = 0  # sequence numbers behind the last packet's
    released: int = 0  # times the universe went quiet (timeout) or was terminated, and its sources let go


@dataclass
class _Socket:
    protocol: str
    sock: socket.socket
    last_sequence: int | None = None


class DmxInput(Source):
    """Art-Net and/or sACN on `host` (default: this machine only); see the module docstring."""

    kind = "dmx"

    def __init__(self, bus, *, protocol: str = "both", host: str = "127.0.0.1", universe: int = 1, start: int = 1,
                 channels: int = CHANNELS, allow=LOOPBACK, max_per_second: float = 1000.0, multicast: bool = True,
                 timeout: float = 2.5, artnet_port: int = ARTNET_PORT, sacn_port: int = SACN_PORT,
                 **source_options):
        check(protocol, universe, start, channels, timeout, max_per_second)
        check_host(host)
        source_options.setdefault("decay", 0.0)
        super().__init__(bus, **source_options)
        self._stats = DmxStats()
        self.protocol, self.host, self.universe = protocol, host, universe
        self.start_channel, self.channels, self.multicast, self.timeout = start, channels, multicast, float(timeout)
        self.allow = Allowlist(allow, "[dmx] allow")
        self.rate = RateLimit(max_per_second, "[dmx] max_per_second")
        self.ports = {"artnet": artnet_port, "sacn": sacn_port}
        self._sockets: list[_Socket] = []
        self._levels: dict[int, int] = {}  # channel -> level last posted
        self._last_frame: float | None = None  # clock() of the last applied frame
        self._last_warning: dict[str, float] = {}
        self._bound: list[int] = []

    @property
    def protocols(self) -> tuple[str, ...]:
        return ("artnet", "sacn") if self.protocol == "both" else (self.protocol,)

    def port(self, protocol: str) -> int:
        """The port a protocol listens on (the one the system picked, once open, for port 0)."""
        for s in self._sockets:
            if s.protocol == protocol:
                return s.sock.getsockname()[1]
        return self.ports[protocol]

    def source(self, channel: int) -> str:
        return f"dmx:{self.universe}/{channel}"

    # --- Source ---

    def _open(self) -> None:
        footprint = range(self.start_channel, self.start_channel + self.channels)
        routes = getattr(self.bus, "routes", None)
        self._bound = [c for c in footprint if routes is None or routes(self.source(c))]
        if not self._bound:
            log.warning("dmx: no [[bind]] row uses dmx:%d/%d..%d: nothing to move", self.universe, footprint[0],
                        footprint[-1])
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        try:
            for protocol in self.protocols:
                sock = socket.socket(family, socket.SOCK_DGRAM)
                self._sockets.append(_Socket(protocol, sock))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # share a port with another DMX app
                sock.bind((self.host, self.ports[protocol]))
                sock.setblocking(False)
                if protocol == "sacn" and self.multicast and family == socket.AF_INET and self.host in ("0.0.0.0", ""):
                    self._join(sock)
        except OSError as e:
            raise DeviceLost(f"cannot listen for {protocol} on {self.host}:{self.ports[protocol]}: "
                             f"{e.strerror or e}") from None
        self._levels, self._last_frame = {}, None
        log.info("listening for DMX (%s) universe %d channels %d..%d on %s", self.protocol, self.universe,
                 footprint[0], footprint[-1], ", ".join(f"udp {self.host}:{self.port(p)}" for p in self.protocols))

    def _join(self, sock: socket.socket) -> None:
        group = calculate_multicast_addr(self.universe)  # 239.255.<hi>.<lo>
        try:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))
        except OSError as e:  # no multicast route (a container): unicast still arrives
            log.warning("dmx: cannot join sACN multicast group %s (%s); only unicast sACN will arrive", group,
                        e.strerror or e)

    def _step(self) -> bool:
        ready, _, _ = select.select([s.sock for s in self._sockets], [], [], 0.05)
        for s in self._sockets:
            if s.sock not in ready:
                continue
            for _ in range(64):  # drain, bounded, so a flood cannot starve the stop flag
                try:
                    data, sender = s.sock.recvfrom(MAX_DATAGRAM)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # an ICMP error on UDP: keep listening
                    self._warn("socket", "dmx: receive failed: %s", e)
                    break
                try:
                    self.handle(s, data, sender[0], self.clock())
                except Exception:  # a bug must not take the input down for the rest of the show
                    self._stats.errors += 1
                    log.exception("dmx: failed to handle a packet from %s", sender[0])
        if self._last_frame is not None and self.clock() - self._last_frame > self.timeout:
            self._let_go(f"no DMX for {self.timeout:.1f} s")
        return True

    def _close(self) -> None:
        for s in self._sockets:
            s.sock.close()
        self._sockets = []

    # --- one datagram ---

    def handle(self, s: _Socket, data: bytes, host: str, now: float) -> None:
        st = self._stats
        st.packets += 1
        self._count_read()
        if not self.allow.allows(host):
            st.disallowed += 1
            self._warn("disallowed", "dmx: ignoring %s, which is outside [dmx] allow", host)
            return
        if not self.rate.take(host, now):
            st.rate_limited += 1
            self._warn("rate", "dmx: %s sends more than %g packets/s; dropping the excess", host,
                       self.rate.per_second)
            return
        try:
            frame = PARSERS[s.protocol](data)
        except Malformed as e:
            st.malformed += 1
            self._warn("malformed", "dmx: malformed %s packet from %s (%d bytes): %s", s.protocol, host, len(data), e)
            return
        if frame is None:
            st.ignored += 1
            return
        if frame.universe != self.universe:
            st.other_universe += 1
            return
        if frame.terminated:
            self._let_go(f"{host} terminated the sACN stream")
            s.last_sequence = None
            return
        if frame.sequence and s.last_sequence is not None:
            behind = (s.last_sequence - frame.sequence) % 256
            if 0 <= behind < LATE:
                st.late += 1
                return
        if frame.sequence:
            s.last_sequence = frame.sequence
        st.frames += 1
        self._last_frame = now
        for channel in self._bound:
            if channel > len(frame.levels):
                break
            level = frame.levels[channel - 1]
            if self._levels.get(channel) != level:
                self._levels[channel] = level
                self.post(f"{self.universe}/{channel}", level / 255, continuous=False)

    def _let_go(self, why: str) -> None:
        if self._levels:
            log.info("dmx: %s; letting go of universe %d", why, self.universe)
            for channel in self._levels:
                self.bus.release(self.source(channel))
            self._stats.released += 1
        self._levels, self._last_frame = {}, None

    def _rest(self, wait: float) -> bool:  # lost: let go of every channel at once, as a MIDI port does
        self._let_go("the input was lost")
        return super()._rest(wait)

    def _warn(self, kind: str, message: str, *args) -> None:
        """At most one line a second per kind: a flood of garbage must not become a flood of log lines."""
        now = time.monotonic()
        if now - self._last_warning.get(kind, -math.inf) >= 1.0:
            self._last_warning[kind] = now
            log.warning(message, *args)

    @classmethod
    def from_show(cls, bus, section) -> DmxInput:
        """The input a show's `[dmx]` section describes (engine.show.DmxSection)."""
        return cls(bus, protocol=section.protocol, host=section.host, universe=section.universe,
                   start=section.start, channels=section.channels, allow=section.allow,
                   max_per_second=section.max_per_second, multicast=section.multicast, timeout=section.timeout)
