"""Masquerade: real-time latent-space walks from GANs onto OpenGL displays.

Data flows one way: inputs -> control -> walk -> generator -> filters -> outputs.
A frame is a pure function of show time and control state (see docs/architecture.md).
"""

__version__ = "0.1.0"
