"""Opening hours and the playlist, as pure functions of the date and time they are given."""

from __future__ import annotations

from datetime import datetime, timedelta
from datetime import time as dtime

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

Hours = dict[int, list[tuple[dtime, dtime | None]]]  # weekday (0 Monday) -> ranges; None end: until midnight


def _clock(text: str, where: str) -> dtime | None:
    text = text.strip()
    if text == "24:00":
        return None
    try:
        return datetime.strptime(text, "%H:%M").time()
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a time of day (expected HH:MM, 00:00 to 24:00)") from None


def parse_hours(raw: dict, where: str) -> Hours:
    """`{mon = "10:00-18:00", tue = "10:00-13:00, 14:00-20:00", sun = "closed", ...}` -> Hours.

    A day left out is closed; "always" is the whole day. A range whose end is before its start runs past
    midnight into the next day ("20:00-02:00")."""
    unknown = set(raw) - set(DAYS)
    if unknown:
        raise ValueError(f"{where}: unknown day {sorted(unknown)[0]!r} (expected {', '.join(DAYS)})")
    hours: Hours = {day: [] for day in range(7)}
    for day, name in enumerate(DAYS):
        text = raw.get(name, "closed")
        key = f"{where}.{name}"
        if not isinstance(text, str):
            raise ValueError(f"{key}: expected a string like \"10:00-18:00\", got {type(text).__name__}")
        if text.strip() in ("closed", ""):
            continue
        if text.strip() == "always":
            hours[day].append((dtime(0, 0), None))
            continue
        for part in text.split(","):
            start_text, dash, end_text = part.partition("-")
            if not dash:
                raise ValueError(f"{key}: {part.strip()!r} is not a range (expected HH:MM-HH:MM)")
            start, end = _clock(start_text, key), _clock(end_text, key)
            if start is None:
                raise ValueError(f"{key}: a range cannot start at 24:00")
            if end is not None and end <= start:  # past midnight: split over two days
                hours[day].append((start, None))
                hours[(day + 1) % 7].append((dtime(0, 0), end))
            else:
                hours[day].append((start, end))
    return hours


def is_open(hours: Hours | None, now: datetime) -> bool:
    """Open at `now`? No hours at all means always open."""
    if hours is None:
        return True
    clock = now.time()
    return any(start <= clock and (end is None or clock < end) for start, end in hours[now.weekday()])


def next_change(hours: Hours | None, now: datetime, step: timedelta = timedelta(minutes=1)) -> datetime | None:
    """When the kiosk next opens or closes (to the minute), for the status page; None if never."""
    if hours is None:
        return None
    state = is_open(hours, now)
    t = now.replace(second=0, microsecond=0) + step
    for _ in range(8 * 24 * 60):
        if is_open(hours, t) != state:
            return t
        t += step
    return None


def advance(durations: list[float | None], index: int, started: float, now: float) -> tuple[int, float]:
    """The playlist entry that plays at wall time `now`, given the one that started at `started`.

    `durations` are seconds (None: plays until something else happens). Returns (index, its start)."""
    if not durations:
        return 0, now
    index %= len(durations)
    for _ in range(len(durations) * 1000):  # a supervisor that was off for days catches up, boundedly
        seconds = durations[index]
        if seconds is None or now - started < seconds:
            return index, started
        started += seconds
        index = (index + 1) % len(durations)
    return index, now
