"""`masquerade kiosk SITE.toml` (or `python -m installation.kiosk SITE.toml`): run the kiosk
(see installation/README.md).

`--check` only reads the site file and validates every show in it, then exits (0: all good, 2: not).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from installation.kiosk import logs
from installation.kiosk import site as sites

log = logging.getLogger("kiosk")


def main(argv: list[str] | None = None, prog: str = "python -m installation.kiosk") -> int:
    p = argparse.ArgumentParser(prog=prog, description="Run a Masquerade kiosk.")
    p.add_argument("site", type=Path, help="the site file (installation/example-site.toml explains every key)")
    p.add_argument("--check", action="store_true", help="validate the site file and its shows, then exit")
    args = p.parse_args(argv)
    try:
        site = sites.load(args.site)
    except sites.SiteError as e:
        print(f"kiosk: error: {e}", file=sys.stderr)
        return 2
    from installation.kiosk.supervisor import Supervisor, check_show

    if args.check:
        problems = 0
        for show in dict.fromkeys([*site.shows(), site.safe_show]):
            why = check_show(show, site.watchdog.validate_seconds, site.watchdog.validate_memory_mb)
            print(f"{'ok ' if why is None else 'BAD'} {show}{'' if why is None else ': ' + why}")
            problems += why is not None
        return 2 if problems else 0
    recent = logs.setup(site.log_dir, site.log_max_bytes, site.log_backups)
    supervisor = Supervisor(site, recent=recent)
    server = None
    if site.status.enabled:
        from installation.kiosk import status

        server = status.serve(supervisor, site.status.host, site.status.port)
    crowd = None
    if site.crowd.enabled:  # its own port and app: no staff controls reachable from it
        from installation.kiosk import crowd as crowds

        crowd = crowds.serve(site.crowd, supervisor.engine_osc_port)
    try:
        return supervisor.run()
    finally:
        if server is not None:
            server.should_exit = True
        if crowd is not None:
            crowd[0].should_exit = True
            crowd[1].stop()


if __name__ == "__main__":
    sys.exit(main())
