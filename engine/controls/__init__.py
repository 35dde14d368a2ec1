"""Controls: inputs write named parameters on a bus; the render loop reads one snapshot per frame.

- `bus`: `Param`, `Binding`, `Bus`, `Snapshot` (pure Python, thread-safe posting).
- `record`: `Recording` and `Replay`, so a live set re-renders offline frame for frame.
- `addresses`: the `/masq/...` OSC address space, its default params and bindings.
- `osc`: the UDP receiver (python-osc) and TouchOSC-style feedback.
- `dmx`: Art-Net and sACN (E1.31) channels as `dmx:<universe>/<channel>` sources.
- `gate`: the allowlist and per-sender rate limit the network inputs share.

Nothing is imported here, so loading the bus never pulls in a network library.
"""
