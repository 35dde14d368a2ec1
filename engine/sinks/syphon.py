"""Syphon (macOS only): GPU texture sharing with Resolume, VDMX, MadMapper and OBS on one Mac.

Not built yet: on every platform this sink says so and names what works instead.
"""

from __future__ import annotations

import sys

from engine.sinks import Unavailable


class Server:
    def __init__(self, name: str = "Masquerade"):
        if sys.platform != "darwin":
            raise Unavailable(f"syphon: Syphon exists only on macOS (this is {sys.platform}); "
                              "use the ndi, virtualcam or stream sink")
        raise Unavailable("syphon: not built yet in Masquerade; use the ndi sink (Resolume, VDMX and OBS read NDI) "
                          "or virtualcam")
