"""Check a show file the way the engine will read it, in its own interpreter (it imports torch).

`python -m installation.kiosk.validate SHOW`: exit 0 when it would play, or print the reason (file,
key, what was expected) and exit 2. The supervisor runs this before it plays a changed file.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    from engine.errors import MasqueradeError
    from engine.show import load

    if len(argv) != 1:
        print("usage: python -m installation.kiosk.validate SHOW", file=sys.stderr)
        return 2
    try:
        show = load(argv[0])
    except MasqueradeError as e:
        print(e)
        return 2
    if not show.model_path.is_file():
        print(f"{argv[0]}: model.path: {show.model_path}: no such model file")
        return 2
    print(f"ok: {show.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
