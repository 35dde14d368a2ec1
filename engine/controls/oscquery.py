"""OSCQuery: the engine's OSC address space as JSON over HTTP, and over mDNS where zeroconf is installed.

The protocol is Vidvox's OSCQuery proposal (https://github.com/Vidvox/OSCQueryProposal): `GET /` answers the
whole tree, `GET /masq/walk/speed` one node, `GET /masq/walk/speed?VALUE` one attribute (`{"VALUE": [0.5]}`),
`GET /?HOST_INFO` the server (name, OSC address, port and transport, and which attributes it serves). A node
has `FULL_PATH`, and either `CONTENTS` (a container) or `TYPE` (OSC type tags), `RANGE`, `ACCESS` (2: write
only, for buttons and numbers; 3: read and write, for faders) and `VALUE` (faders: where the fader should sit
now, in the address's own input range, read from the bus's newest snapshot), and `DESCRIPTION`.

Served by the standard library's `http.server` (python-oscquery binds every interface, needs zeroconf and
requests, and serves no RANGE): bound to the OSC receiver's host (this machine by default), the same `allow`
list, GET only, at most `MAX_CLIENTS` requests at once, each with a 5 s timeout. `[osc] query_port` turns it
on. mDNS (`_oscjson._tcp` and `_osc._udp`) is optional: without the zeroconf package, or where it cannot
register, one line is logged and the HTTP service goes on.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from engine.controls.gate import Allowlist

log = logging.getLogger("masquerade.oscquery")

MAX_CLIENTS = 16
ATTRIBUTES = ("FULL_PATH", "CONTENTS", "TYPE", "RANGE", "VALUE", "ACCESS", "DESCRIPTION")
EXTENSIONS = {"ACCESS": True, "VALUE": True, "RANGE": True, "DESCRIPTION": True, "TAGS": False,
              "EXTENDED_TYPE": False, "UNIT": False, "CRITICAL": False, "CLIPMODE": False, "LISTEN": False,
              "PATH_CHANGED": False, "PATH_RENAMED": False, "PATH_ADDED": False, "PATH_REMOVED": False}


def _about() -> dict[str, tuple[str, str]]:
    from engine.controls.addresses import ADDRESSES

    return {a.address: (a.args, a.about) for a in ADDRESSES}


def tree(bus, commands=(), name: str = "Masquerade") -> dict:
    """The OSCQuery tree of every OSC address the bus binds (and the `commands`, write-only buttons), with the
    values of the bus's newest snapshot."""
    about = _about()
    snap = bus.latest
    root = {"FULL_PATH": "/", "CONTENTS": {}, "ACCESS": 0, "DESCRIPTION": name}
    seen = set()
    for b in bus.bindings:
        if b.scheme != "osc" or b.source in seen:
            continue
        seen.add(b.source)
        address = b.source[4:]
        param = bus.params[b.target]
        args, text = about.get(address, ("f", f"{param.name} ({b.where})"))
        lo, hi = sorted(b.input)
        node = {"FULL_PATH": address, "DESCRIPTION": text}
        if param.trigger:  # a button sends 1 (or nothing); a number sends N: nothing to read back
            node.update(TYPE="i", RANGE=[{"MIN": int(lo), "MAX": int(hi)}], ACCESS=2)
        else:
            target = snap.targets[b.target] if snap is not None and b.target in snap.targets else param.default
            node.update(TYPE="f", RANGE=[{"MIN": lo, "MAX": hi}], ACCESS=3, VALUE=[b.unmap(target, param)])
        _place(root, address, node)
    for address, text in commands:
        _place(root, address, {"FULL_PATH": address, "TYPE": "i", "RANGE": [{"MIN": 0, "MAX": 1}], "ACCESS": 2,
                               "DESCRIPTION": text})
    return root


def _place(root: dict, address: str, node: dict) -> None:
    parts = [p for p in address.split("/") if p]
    here = root
    for i, part in enumerate(parts[:-1]):
        here = here.setdefault("CONTENTS", {}).setdefault(part, {
            "FULL_PATH": "/" + "/".join(parts[:i + 1]), "CONTENTS": {}, "ACCESS": 0})
    here.setdefault("CONTENTS", {})[parts[-1]] = {**here.get("CONTENTS", {}).get(parts[-1], {}), **node}


def find(root: dict, path: str) -> dict | None:
    node = root
    for part in (p for p in path.split("/") if p):
        node = node.get("CONTENTS", {}).get(part)
        if node is None:
            return None
    return node


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, service):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.service = service
        self.slots = threading.BoundedSemaphore(MAX_CLIENTS)
        super().__init__(address, _Handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):  # a flood of connections: refuse, never queue
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except Exception:
            self.slots.release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    timeout = 5.0
    server_version = "Masquerade-OSCQuery"
    protocol_version = "HTTP/1.0"

    def log_message(self, format, *args):  # no access log: a flood must not fill the disk
        log.debug("%s %s", self.client_address[0], format % args)

    def _send(self, code: int, body) -> None:
        data = (json.dumps(body) if not isinstance(body, str) else body).encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if not isinstance(body, str) else "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        service = self.server.service
        if not service.allow.allows(self.client_address[0]):
            self._send(403, "outside [osc] allow")
            return
        url = urlsplit(self.path)
        query = url.query
        if query == "HOST_INFO":
            self._send(200, service.host_info(self.connection.getsockname()[0]))
            return
        if query and query not in ATTRIBUTES:
            self._send(400, f"unknown attribute {query[:40]!r} (this server answers {', '.join(ATTRIBUTES)}, "
                            "HOST_INFO)")
            return
        node = find(service.tree(), unquote(url.path))
        if node is None:
            self._send(404, "no such OSC address")
            return
        if not query:
            self._send(200, node)
        elif query not in node:
            self._send(204 if query == "VALUE" else 400, "")  # a write-only node has no VALUE (the spec: 204)
        else:
            self._send(200, {query: node[query]})


class Service:
    """The OSCQuery HTTP server for one run (and its mDNS records). `start()`, `stop()`, `port`."""

    def __init__(self, bus, osc_port: int, host: str = "127.0.0.1", port: int = 0, allow=("127.0.0.0/8", "::1/128"),
                 name: str = "Masquerade", commands=(), mdns: bool = True):
        self.bus, self.osc_port, self.host, self._port, self.name = bus, osc_port, host, port, name
        self.allow = Allowlist(allow, "[osc] allow")
        self.commands = tuple(commands)
        self.mdns = mdns
        self._server: _Server | None = None
        self._zeroconf = None
        self._services: list = []
        self._mdns_thread: threading.Thread | None = None
        self._mdns_lock = threading.Lock()

    @property
    def port(self) -> int:
        return self._server.server_address[1] if self._server is not None else self._port

    def tree(self) -> dict:
        return tree(self.bus, self.commands, self.name)

    def host_info(self, local: str) -> dict:
        ip = self.host if self.host not in ("0.0.0.0", "::", "") else local  # the address the client reached
        return {"NAME": self.name, "OSC_IP": ip, "OSC_PORT": self.osc_port, "OSC_TRANSPORT": "UDP",
                "EXTENSIONS": dict(EXTENSIONS)}

    def start(self) -> Service:
        from engine.controls.bus import ControlError

        try:
            self._server = _Server((self.host, self._port), self)
        except OSError as e:
            raise ControlError(f"[osc] query_port: cannot listen on {self.host}:{self._port}: {e.strerror or e}") \
                from None
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2}, name="oscquery",
                         daemon=True).start()
        log.info("OSCQuery on http://%s:%d/ (OSC port %d)", self.host, self.port, self.osc_port)
        if self.mdns:  # registering takes seconds (mDNS probes): the show does not wait for it
            self._mdns_thread = threading.Thread(target=self._advertise, name="oscquery-mdns", daemon=True)
            self._mdns_thread.start()
        return self

    def _advertise(self) -> None:
        try:
            from zeroconf import ServiceInfo, Zeroconf
        except ImportError:
            log.info("OSCQuery: no mDNS advertisement (pip install zeroconf); clients need the address")
            return
        try:
            ip = self.host
            if ipaddress.ip_address(ip).is_unspecified:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:  # the interface a route would use
                    s.connect(("192.0.2.1", 9))  # TEST-NET-1: nothing is sent
                    ip = s.getsockname()[0]
            label = "".join(c if c.isalnum() or c in "-_ " else "-" for c in self.name)[:40] or "Masquerade"
            with self._mdns_lock:
                if self._server is None:
                    return  # stopped meanwhile
                self._zeroconf = Zeroconf(interfaces=[ip])
                for kind, port in (("_oscjson._tcp.local.", self.port), ("_osc._udp.local.", self.osc_port)):
                    info = ServiceInfo(kind, f"{label}.{kind}", port=port, properties={"txtvers": "1"},
                                       server=f"{label.replace(' ', '-')}.local.", parsed_addresses=[ip])
                    self._zeroconf.register_service(info)
                    self._services.append(info)
            log.info("OSCQuery advertised over mDNS as %r on %s", label, ip)
        except Exception as e:  # no multicast on this interface, a name clash, a sandbox: the HTTP service goes on
            log.warning("OSCQuery: mDNS advertisement failed (%s: %s); the HTTP service goes on", type(e).__name__, e)
            self._close_mdns()

    @property
    def advertised(self) -> bool:
        """True once both mDNS records are registered."""
        return len(self._services) == 2

    def _close_mdns(self) -> None:
        with self._mdns_lock:
            self._close_zeroconf()

    def _close_zeroconf(self) -> None:
        if self._zeroconf is not None:
            try:
                for info in self._services:
                    self._zeroconf.unregister_service(info)
                self._zeroconf.close()
            except Exception as e:
                log.debug("mDNS close: %s", e)
            self._zeroconf, self._services = None, []

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._mdns_thread is not None:
            self._mdns_thread.join(timeout=10)  # bounded: a registration that hangs is left to the process's end
        self._close_mdns()

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
