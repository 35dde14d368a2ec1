"""The kiosk layer: runs the engine unattended (supervisor, schedule, status page). Never imports torch."""
