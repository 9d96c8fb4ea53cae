"""`python -m bench <name> [options]`: run one benchmark (see each module's docstring)."""

from __future__ import annotations

import asyncio
import importlib
import sys

BENCHMARKS = ("devstack", "ingest", "engine", "turns", "soak")


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        sys.stderr.write(f"usage: python -m bench {{{','.join(BENCHMARKS)}}} [options]\n")
        return 2
    module = importlib.import_module(f"bench.{sys.argv[1]}")
    asyncio.run(module.main(sys.argv[2:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
