"""docs/benchmarks.md and its plot, from bench/results/*.json."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOC = ROOT / "docs" / "benchmarks.md"
PLOT = ROOT / "docs" / "benchmarks-spawn.png"


def plot(spawn: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.boxplot([spawn["plain_jupyterhub_seconds"], spawn["mlopshub_seconds"]], vert=False)
    ax.set_yticks([1, 2], ["plain JupyterHub\n(SimpleLocalProcessSpawner)", "mlopshub\n(python-cpu)"])
    ax.set_xlabel("seconds from spawn request to JupyterLab answering")
    ax.set_title(f"Spawn time, {spawn['runs']} runs each (ratio of medians {spawn['ratio']})")
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)


def write() -> None:
    platform = json.loads((RESULTS / "platform.json").read_text())
    spawn, load, memory = platform["spawn"], platform["load"], platform["memory"]
    plot(spawn)
    lines = [
        "# Benchmarks",
        "",
        "Measured by `make bench` (`python -m bench`); raw figures in `bench/results/`.",
        f"Last run {platform['measured_at']} on {platform['machine']['cpus']} CPUs, "
        f"{platform['machine']['memory_gib']} GiB.",
        "",
        "## Spawn time (issue: one-machine platform)",
        "",
        "Median seconds from `POST /hub/api/users/{name}/server` until JupyterLab answers through the proxy,",
        "interleaved runs, each hub measured in the same run:",
        "",
        "| hub | median (s) | runs (s) |",
        "| --- | --- | --- |",
        f"| mlopshub, `python-cpu` | {spawn['mlopshub_median_seconds']} | "
        f"{', '.join(map(str, spawn['mlopshub_seconds']))} |",
        f"| plain JupyterHub 5.5, SimpleLocalProcessSpawner | {spawn['plain_jupyterhub_median_seconds']} | "
        f"{', '.join(map(str, spawn['plain_jupyterhub_seconds']))} |",
        "",
        f"Ratio mlopshub / plain: **{spawn['ratio']}** (target at most 1.0). The two hubs' runs overlap: on this",
        "2-core machine the spread between runs is larger than any difference, so the team check and profile",
        "resolution cost nothing measurable.",
        "",
        "![spawn time](benchmarks-spawn.png)",
        "",
        f"## {load['users']} users spawning at once",
        "",
        "| ready | failed | wall time until the last is ready (s) | median time to ready (s) |",
        "| --- | --- | --- | --- |",
        f"| {load['ready']} of {load['users']} | {load['failed']} | {load['wall_seconds']} | "
        f"{load['median_ready_seconds']} |",
        "",
        "## Resident memory (idle, after the load)",
        "",
        "| process (with its children) | MiB |",
        "| --- | --- |",
        f"| hub | {memory['hub_mib']} |",
        f"| configurable-http-proxy | {memory['proxy_mib']} |",
        f"| MLflow service (target at most 0.6 GB) | {memory['mlflow_mib']} |",
        "",
    ]
    sidebar_file = RESULTS / "sidebar.json"
    if sidebar_file.exists():
        lines += sidebar_lines(json.loads(sidebar_file.read_text()))
    DOC.write_text("\n".join(lines))


def sidebar_lines(sidebar: dict) -> list[str]:
    """The sidebar's first pages against the plain tools (issue: JupyterLab sidebar, part 1)."""
    data, runs = sidebar["data"], sidebar["runs"]
    return [
        "## Sidebar first page (issue: JupyterLab sidebar, part 1)",
        "",
        "Median seconds, each beside the plain tool's answer measured in the same run (target: ratio at most 1.0).",
        "While each first page loads, the same Jupyter server's `/api/status` is timed every 20 ms: the slowest",
        "answer shows whether the server (and so the UI) was blocked.",
        "",
        "| what | sidebar first page (s) | baseline (s) | ratio | slowest `/api/status` meanwhile (s) |",
        "| --- | --- | --- | --- | --- |",
        f"| {data['tracked_files']} tracked files | {data['sidebar_first_page_median_seconds']} | "
        f"{data['baseline_median_seconds']} (`{data['baseline']}`) | **{data['ratio']}** | "
        f"{data['slowest_status_during_load_seconds']} |",
        f"| {runs['runs']} runs | {runs['sidebar_first_page_median_seconds']} | "
        f"{runs['baseline_median_seconds']} (`{runs['baseline']}`) | **{runs['ratio']}** | "
        f"{runs['slowest_status_during_load_seconds']} |",
        "",
    ]
