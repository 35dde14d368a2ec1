"""The gallery kiosk: a supervisor that runs `masquerade run` as a child process and keeps it alive.

It watches the engine's heartbeat file (`masquerade run --heartbeat PATH`), restarts a crashed or hung
engine with back-off, falls back to a safe show after repeated failures, follows a playlist and opening
hours, reloads edited show and site files after validating them, tells systemd it is alive (sd_notify),
and serves a staff status page. This package never imports torch or the engine's heavy modules: a show is
validated in a separate interpreter, so a supervisor stays small and outlives any fault in the engine.
"""
