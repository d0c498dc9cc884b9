"""Run every benchmark and write bench/results/*.json and docs/benchmarks.md."""

import argparse

from . import platform_bench, report


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--spawns", type=int, default=5, help="sequential spawns per hub for the median")
    parser.add_argument("--users", type=int, default=50, help="users spawning at once")
    args = parser.parse_args()
    platform_bench.run(spawns=args.spawns, users=args.users)
    report.write()


if __name__ == "__main__":
    main()
