"""Who may send, and how fast: the allowlist and per-sender token bucket the network inputs share.

The same rules as the OSC receiver's (`engine.controls.osc.Receiver`, docs/osc.md "Security"): a sender is
heard when its address is inside one of the allowed networks (by default this machine only); an IPv4
address mapped into IPv6 counts as the IPv4 one; each sender may send `per_second` packets a second on
average, in bursts of up to `per_second`, and the excess is dropped (and counted by the caller). Both
tables are bounded (4096 senders), so a spoofed flood cannot grow them without limit. Pure Python, no
sockets: the receivers own those, and the tests drive these with made-up addresses and clocks.
"""

from __future__ import annotations

import ipaddress
import math

from engine.controls.bus import ControlError

LOOPBACK = ("127.0.0.0/8", "::1/128")
MAX_SENDERS = 4096


class Allowlist:
    def __init__(self, networks=LOOPBACK, where: str = "allow"):
        if isinstance(networks, str):
            networks = (networks,)
        try:
            self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)
        except (ValueError, TypeError) as e:
            raise ControlError(f"{where}: {e}") from None
        self._known: dict[str, bool] = {}

    @property
    def loopback_only(self) -> bool:
        return all(net.is_loopback for net in self.networks)

    def allows(self, host: str) -> bool:
        known = self._known.get(host)
        if known is None:
            try:
                ip = ipaddress.ip_address(host.split("%")[0])  # drop an IPv6 scope id
            except ValueError:
                return False
            if ip.version == 6 and ip.ipv4_mapped:
                ip = ip.ipv4_mapped
            known = any(ip in net for net in self.networks)
            if len(self._known) >= MAX_SENDERS:
                self._known.clear()
            self._known[host] = known
        return known


class RateLimit:
    """Token bucket per sender: `take(host, now)` is False when the sender is over its rate."""

    def __init__(self, per_second: float, where: str = "max_per_second"):
        if isinstance(per_second, bool) or not isinstance(per_second, (int, float)) or not 0 < per_second < math.inf:
            raise ControlError(f"{where} must be a positive finite number, got {per_second!r}")
        self.per_second = float(per_second)
        self._buckets: dict[str, list[float]] = {}  # host -> [tokens, last time]

    def take(self, host: str, now: float, n: int = 1) -> bool:
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) >= MAX_SENDERS:
                self._buckets.clear()
            bucket = self._buckets[host] = [self.per_second, now]
        bucket[0] = min(self.per_second, bucket[0] + max(0.0, now - bucket[1]) * self.per_second)
        bucket[1] = now
        if bucket[0] < n:
            return False
        bucket[0] -= n
        return True
