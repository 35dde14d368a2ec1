"""Logging for the kiosk: a rotating file (bounded on disk), stderr (the journal under systemd) and the
last lines in memory for the status page. A disk that fills up costs log lines, never the show."""

from __future__ import annotations

import logging
import logging.handlers
from collections import deque
from pathlib import Path

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class Recent(logging.Handler):
    """The last `size` formatted records, for `GET /api/log`."""

    def __init__(self, size: int = 500):
        super().__init__()
        self.lines: deque[str] = deque(maxlen=size)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record))
        except Exception:  # a log handler must never raise into the code that logs
            self.handleError(record)


def setup(log_dir: Path, max_bytes: int, backups: int, stderr: bool = True) -> Recent:
    """Route the `kiosk` loggers to `log_dir/kiosk.log` (rotated), stderr and memory."""
    logger = logging.getLogger("kiosk")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    formatter = logging.Formatter(FORMAT)
    recent = Recent()
    handlers: list[logging.Handler] = [recent]
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.handlers.RotatingFileHandler(log_dir / "kiosk.log", maxBytes=max_bytes,
                                                             backupCount=backups, encoding="utf-8"))
    except OSError as e:  # no log file: the journal and the status page still have the lines
        logging.getLogger("kiosk").warning("cannot open the log file in %s: %s", log_dir, e)
    if stderr:
        handlers.append(logging.StreamHandler())
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return recent
