"""Spout (Windows only): GPU texture sharing with Resolume, TouchDesigner and OBS on one PC.

Not built yet: on every platform this sink says so and names what works instead (NDI reaches the same
programs, and on the same PC costs little more than a copy).
"""

from __future__ import annotations

import sys

from engine.sinks import Unavailable


class Sender:
    def __init__(self, name: str = "Masquerade"):
        if sys.platform != "win32":
            raise Unavailable(f"spout: Spout exists only on Windows (this is {sys.platform}); "
                              "use the ndi, virtualcam or stream sink")
        raise Unavailable("spout: not built yet in Masquerade; use the ndi sink (Resolume, TouchDesigner and OBS "
                          "read NDI) or virtualcam")
