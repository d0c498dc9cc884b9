"""Run the benchmarks and write bench/results/*.json and docs/benchmarks.md."""

import argparse
import json
from pathlib import Path

from . import monitoring_bench, pipeline_bench, platform_bench, recovery_bench, report, sidebar_bench, usage_bench

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--only",
        choices=["platform", "sidebar", "pipeline", "recovery", "usage", "monitoring"],
        help="run one benchmark (default: all)",
    )
    parser.add_argument("--spawns", type=int, default=11, help="sequential spawns per hub for the median")
    parser.add_argument("--users", type=int, default=50, help="users spawning at once")
    parser.add_argument("--files", type=int, default=10_000, help="tracked files in the sidebar's data project")
    parser.add_argument("--runs", type=int, default=5_000, help="runs in the sidebar's experiment")
    parser.add_argument("--publishes", type=int, default=5, help="timed publishes (and by-hand baselines)")
    parser.add_argument("--load-seconds", type=float, default=20.0, help="seconds of load per throughput run")
    parser.add_argument("--concurrency", type=int, default=8, help="requests in flight during the load runs")
    parser.add_argument("--workspaces", type=int, default=20, help="running workspaces through a hub crash")
    parser.add_argument("--busy-starts", type=int, default=10, help="up/down cycles with every core busy")
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    if args.only in (None, "platform"):
        platform_bench.run(spawns=args.spawns, users=args.users)
    if args.only in (None, "sidebar"):
        results = sidebar_bench.run_bench(files=args.files, runs=args.runs)
        (RESULTS / "sidebar.json").write_text(json.dumps(results, indent=2) + "\n")
    if args.only in (None, "pipeline"):
        pipeline_bench.run(publishes=args.publishes, seconds=args.load_seconds, concurrency=args.concurrency)
    if args.only in (None, "recovery"):
        recovery_bench.run(users=args.workspaces, cycles=args.busy_starts)
    if args.only in (None, "usage"):
        usage_bench.run()
    if args.only in (None, "monitoring"):
        monitoring_bench.run(seconds=args.load_seconds, concurrency=args.concurrency)
    report.write()


if __name__ == "__main__":
    main()
