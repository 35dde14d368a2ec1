"""Option checks shared by the walks: a bad value is a ValueError naming the walk and the option.

(Unknown options need no check: the walks take keyword arguments, so Python's TypeError names them.)
"""

from __future__ import annotations

import math


def integer(walk: str, name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{walk}: option {name} must be an integer, got {value!r}")
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        raise ValueError(f"{walk}: option {name} must be {_range(minimum, maximum)}, got {value!r}")
    return value


def number(walk: str, name: str, value, minimum: float | None = None, maximum: float | None = None,
           above: float | None = None, below: float | None = None) -> float:
    """A finite real number; `minimum`/`maximum` are inclusive bounds, `above`/`below` exclusive."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{walk}: option {name} must be a finite number, got {value!r}")
    bad = ((minimum is not None and value < minimum) or (maximum is not None and value > maximum)
           or (above is not None and value <= above) or (below is not None and value >= below))
    if bad:
        lo = f">= {minimum}" if minimum is not None else f"> {above}" if above is not None else None
        hi = f"<= {maximum}" if maximum is not None else f"< {below}" if below is not None else None
        raise ValueError(f"{walk}: option {name} must be {' and '.join(p for p in (lo, hi) if p)}, got {value!r}")
    return float(value)


def _range(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f"{minimum}..{maximum}"
    return f">= {minimum}" if minimum is not None else f"<= {maximum}"
