"""``python -m services_common.healthcheck``: exit 0 when a service is healthy (container healthchecks).

    python -m services_common.healthcheck 127.0.0.1:50052          # gRPC health service says SERVING
    python -m services_common.healthcheck --http http://127.0.0.1:8000/healthz

Exit status 0: healthy; 1: not (the status is printed). Used by ``docker-compose.yml``.
"""

from __future__ import annotations

import argparse
import sys
import urllib.request


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m services_common.healthcheck", description=__doc__.splitlines()[0])
    p.add_argument("address", nargs="?", default=None, help="gRPC host:port (standard health service)")
    p.add_argument("--http", default=None, help="an HTTP URL that must answer 200 instead")
    p.add_argument("--service", default="", help="gRPC health service name ('' = the whole server)")
    p.add_argument("--timeout", type=float, default=3.0)
    args = p.parse_args(argv)
    if args.http:
        try:
            with urllib.request.urlopen(args.http, timeout=args.timeout) as resp:
                ok = resp.status == 200
                print(f"{args.http}: HTTP {resp.status}")
        except OSError as exc:
            print(f"{args.http}: {exc}")
            return 1
        return 0 if ok else 1
    if not args.address:
        p.error("give a gRPC address or --http URL")
    from services_common.client import health_status

    status = health_status(args.address, args.service, timeout=args.timeout)
    print(f"{args.address}: {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    sys.exit(main())
