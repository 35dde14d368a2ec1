"""NDI output: Resolume, TouchDesigner, OBS (with the NDI plugin) and vMix see a source named `name`
on the local network.

Through `ndi-python` (pip install 'masquerade[vj]'), whose wheel carries NewTek's NDI runtime
(libndi, under the NDI licence), so no SDK download is needed. Frames go out as RGBX, unclocked: the
show's clock paces them. Receivers find the source by mDNS; where multicast DNS is blocked they can
connect by address (the NDI sender listens on TCP 5961 and up).
"""

from __future__ import annotations

import numpy as np

from engine.sinks import Unavailable


class Sender:
    def __init__(self, size: tuple[int, int], fps: float, name: str = "Masquerade"):
        try:
            import NDIlib as ndi
        except ImportError:
            raise Unavailable("ndi: needs the NDI binding and runtime: pip install 'masquerade[vj]' "
                              "(ndi-python)") from None
        except OSError as e:  # the runtime library in the wheel does not load on this machine
            raise Unavailable(f"ndi: the NDI runtime does not load here: {e}") from None
        if not ndi.initialize():
            raise Unavailable("ndi: the NDI runtime refused to start (it needs a CPU with SSE4.2)")
        self.ndi = ndi
        self.sender = ndi.send_create(ndi.SendCreate(p_ndi_name=name, clock_video=False))
        if self.sender is None:
            raise Unavailable(f"ndi: could not create the NDI source {name!r}")
        self.name = name
        width, height = size
        self._rgbx = np.full((height, width, 4), 255, np.uint8)
        self._frame = ndi.VideoFrameV2()
        self._frame.FourCC = ndi.FOURCC_VIDEO_TYPE_RGBX
        rate = float(fps)
        self._frame.frame_rate_N, self._frame.frame_rate_D = round(rate * 1000), 1000
        self.count = 0

    def write(self, rgb: np.ndarray, tick) -> None:
        self._rgbx[..., :3] = rgb
        self._frame.data = self._rgbx
        self.ndi.send_send_video_v2(self.sender, self._frame)  # copies the frame: the buffer is ours again
        self.count += 1

    def close(self) -> None:
        if self.sender is not None:
            self.ndi.send_destroy(self.sender)
            self.sender = None
