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
    pipeline_file = RESULTS / "pipeline.json"
    if pipeline_file.exists():
        lines += pipeline_lines(json.loads(pipeline_file.read_text()))
    recovery_file = RESULTS / "recovery.json"
    if recovery_file.exists():
        lines += recovery_lines(json.loads(recovery_file.read_text()))
    monitoring_file = RESULTS / "monitoring.json"
    if monitoring_file.exists():
        lines += monitoring_lines(json.loads(monitoring_file.read_text()))
    DOC.write_text("\n".join(lines))


def monitoring_lines(monitoring: dict) -> list[str]:
    """Issue 15: capture on the request path, and a drift check over a million captured rows."""
    capture, drift = monitoring["capture"], monitoring["drift"]
    off, on, baseline = capture["capture_off"], capture["capture_on"], capture["mlflow_models_serve"]
    alone, beside = drift["alone"], drift["beside_load"]

    def row(what: str, figures: dict) -> str:
        return f"| {what} | {figures['requests_per_second']} | {figures['p50_ms']} | {figures['p99_ms']} |"

    return [
        "## Production monitoring (issue 15)",
        "",
        f"Measured {monitoring['measured_at']} (`{monitoring['command']}`). One staging endpoint through the pipeline",
        f"service, {capture['rows_per_request']} rows per request, the same load from a separate process; capture off",
        "and on and `mlflow models serve` interleaved (off, on, mlflow, off, on, mlflow; means of throughput, medians",
        "of the percentiles):",
        "",
        "| endpoint | requests/s | p50 (ms) | p99 (ms) |",
        "| --- | --- | --- | --- |",
        row("mlopshub, capture off", off),
        row("mlopshub, capture on (every request written)", on),
        row("`mlflow models serve`, same version", baseline),
        "",
        f"Capture on against off: throughput **{capture['on_vs_off_throughput']}x** (target at least 0.95).",
        f"Capture on against `mlflow models serve`: throughput **{capture['on_vs_mlflow_throughput']}x** (target at",
        f"least 1.0), p99 **{capture['on_vs_mlflow_p99']}x** (target at most 1.2). {capture['captured']} requests",
        f"captured, {capture['dropped']} dropped. Capture off against `mlflow models serve` in the same run:",
        f"throughput {round(off['requests_per_second'] / baseline['requests_per_second'], 3)}x, p99",
        f"{round(off['p99_ms'] / baseline['p99_ms'], 3)}x. In this run "
        f"{_targets_met(capture['on_vs_mlflow_throughput'], capture['on_vs_mlflow_p99'], 'with capture on')}",
        "",
        f"A drift check over {alone['rows']:,} captured rows of {alone['features']} features (`Monitor.drift`: read",
        f"from the team's SQLite store, decode, accumulate, test, keep): **{alone['seconds']} s** with the load",
        f"stopped (target under {alone['target_seconds']:.0f} s), {beside['seconds']} s beside the load; it flagged",
        f"{', '.join(alone['drifted'])} (the five shifted features). The endpoint while the check ran in another",
        f"process at the pipeline's drift priority ({beside.get('priority', 'nice')}), against just before: throughput",
        f"**{drift['during_vs_before_throughput']}x**, p99 **{drift['during_vs_before_p99']}x**.",
        "",
    ]


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


def _targets_met(throughput_ratio: float, p99_ratio: float, where: str = "through the service") -> str:
    """Whether a path meets the serving targets against ``mlflow models serve`` (throughput, p99), in words."""
    throughput, p99 = throughput_ratio >= 1.0, p99_ratio <= 1.2
    if throughput and p99:
        return f"both serving targets are met {where}."
    missed = [name for name, met in (("throughput (>= 1.0x)", throughput), ("p99 (<= 1.2x)", p99)) if not met]
    return f"{' and '.join(missed)} not met {where} in this run."


def _load_row(what: str, figures: dict) -> str:
    return (
        f"| {what} | {figures['requests_per_second']} | {figures['p50_ms']} | {figures['p99_ms']} | "
        f"{figures['failed']} |"
    )


def pipeline_lines(pipeline: dict) -> list[str]:
    """The release pipeline's four figures, each beside its baseline (issue 6: release pipeline)."""
    publish, load, memory, switches = (pipeline[k] for k in ("publish", "throughput", "memory", "switches"))
    ours_mem, base_mem = memory["ours"], memory["baseline"]
    extra, base_extra = ours_mem["per_additional_model"], base_mem["per_additional_model"]
    child, zygote, other = ours_mem["child_mean_mb"], ours_mem["zygote_mb"], ours_mem["other_team_first_model"]
    direct, bare = load["breakdown"]["forked_server_direct"], load["breakdown"]["proxy_without_auth"]
    concurrency, runs = load["ours"]["concurrency"], load["ours"].get("runs", 1)
    seconds = load["ours"]["seconds"] / runs
    return [
        "## Release pipeline (issue 6)",
        "",
        f"Measured by `{pipeline['command']}` ({pipeline['measured_at']}): a real MLflow server, the pipeline",
        "service in-process (HubAuth against a small token endpoint), model servers forked from one warm parent",
        "per team (`mlopshub.serving.zygote`); each baseline in the same run.",
        "",
        "| figure | ours | baseline | ratio | target |",
        "| --- | --- | --- | --- | --- |",
        f"| publish to staging endpoint answering, median of {publish['repeats']} (s) | "
        f"{publish['ours_median_seconds']} | {publish['by_hand_median_seconds']} (`create_model_version` + "
        f"`mlflow models serve`) | **{publish['ratio']}** | at most 0.5 |",
        f"| throughput through `/services/models/...` (requests/s) | {load['ours']['requests_per_second']} | "
        f"{load['baseline']['requests_per_second']} (`mlflow models serve --workers 1`) | "
        f"**{load['throughput_ratio']}** | at least 1.0 |",
        f"| p99 latency through `/services/models/...` (ms) | {load['ours']['p99_ms']} | "
        f"{load['baseline']['p99_ms']} | **{load['p99_ratio']}** | at most 1.2 |",
        f"| memory per additional model, PSS (MB) | {extra['pss_mb']} | {base_extra['pss_mb']} (one more "
        f"`mlflow models serve`) | **{memory['pss_ratio']}** | at most 0.5 |",
        f"| failed requests during a promotion and a rollback | {switches['failed_requests']} of "
        f"{switches['load']['ok'] + switches['failed_requests']} | — | — | 0 |",
        "",
        "**Publish.** From `POST releases` until the staging endpoint answers an `/invocations` through the service:",
        "registration, download, the four gates (model loads, signature and example, lineage, metrics on the",
        "hold-out set), the fork and the switch. Runs (s): ours "
        f"{', '.join(map(str, publish['ours_seconds']))}; by hand {', '.join(map(str, publish['by_hand_seconds']))}.",
        f"The first run of each is left out of the median: ours {publish['ours_first_seconds']} s (it starts the",
        f"team's zygote, ~3-4 s, once per team and service start), by hand {publish['by_hand_first_seconds']} s.",
        "",
        f"**Throughput and latency.** {concurrency} keep-alive connections for {seconds:.0f} s from a separate",
        f"load process, 10 rows per request, one worker each; {runs} runs of ours interleaved with {runs} of the",
        "baseline (mean throughput, median percentiles). Our path is what a caller uses: the service's tornado",
        "app, the hub token check (HubAuth, cached 60 s as the service configures it; a caller's yes is kept 30 s),",
        "the endpoint authorisation (the model's team, read once), then the proxy's request to the forked model",
        "server over a kept-alive connection. Where the time goes:",
        "",
        "| path | requests/s | p50 (ms) | p99 (ms) | failed |",
        "| --- | --- | --- | --- | --- |",
        _load_row("`mlflow models serve` (baseline)", load["baseline"]),
        _load_row("forked model server, called directly", direct),
        _load_row("proxy handler only (no token check, no authorisation)", bare),
        _load_row("full path `/services/models/{model}/staging/invocations`", load["ours"]),
        "",
        f"The forked model server alone does {direct['throughput_ratio']}x the baseline's throughput at",
        f"{direct['p99_ratio']}x its p99; behind the proxy handler {bare['throughput_ratio']}x and "
        f"{bare['p99_ratio']}x; the full path {load['throughput_ratio']}x and {load['p99_ratio']}x.",
        "The service, the model server and the load generator share the same two cores, so each hop's Python",
        "work is taken from the model server's CPU; the model server makes up for it by answering MLflow's scoring",
        "protocol (MLflow's own `invocations()`) on one scoring thread in a plain ASGI app, where MLflow's FastAPI app",
        "hands each request to a pool of threads contending for the GIL (`mlopshub.serving.scoring`):",
        f"{_targets_met(load['throughput_ratio'], load['p99_ratio'])} Runs on this machine spread by 10-30% with",
        "its load (it is a shared virtual machine), so compare ratios within one run.",
        "",
        "**Memory.** One team's zygote tree with 1 and with 4 model servers (after 20 requests each), against 1 and",
        "4 `mlflow models serve` trees; per additional model = (at 4 - at 1) / 3. PSS is compared with PSS (the",
        "baseline shares nothing, so its PSS is nearly its whole footprint); RSS counts shared pages in every",
        "process and is shown for reference:",
        "",
        "| per additional model (MB) | RSS | PSS | USS |",
        "| --- | --- | --- | --- |",
        f"| ours (a forked model server) | {extra['rss_mb']} | {extra['pss_mb']} | {extra['uss_mb']} |",
        f"| `mlflow models serve` | {base_extra['rss_mb']} | {base_extra['pss_mb']} | {base_extra['uss_mb']} |",
        "",
        f"One forked server on its own: RSS {child['rss']}, PSS {child['pss']}, USS {child['uss']} MB; the zygote it",
        f"shares pages with: RSS {zygote['rss']}, PSS {zygote['pss']}, USS {zygote['uss']} MB. Teams keep apart: a",
        f"second team's first model costs its own zygote and server, PSS {other['pss_mb']} MB (RSS {other['rss_mb']}),",
        f"against {base_mem['one_serve_tree']['pss_mb']} MB PSS (RSS {base_mem['one_serve_tree']['rss_mb']}) for one",
        "`mlflow models serve`.",
        "",
        f"**Switches.** Steady load ({concurrency} connections, {switches['load']['seconds']:.0f} s) on the production",
        f"endpoint; a release promoted at {switches['promotion_done_at_seconds']} s and rolled back at",
        f"{switches['rollback_done_at_seconds']} s: {switches['failed_requests']} failed requests, answers by version",
        f"{switches['load']['versions']}.",
        "",
    ]


def recovery_lines(recovery: dict) -> list[str]:
    """Recovery per part, workspaces through a hub crash, busy starts (bench/recovery_bench.py)."""
    lines = [
        "",
        f"## Recovery after SIGKILL (issue 12, measured {recovery['measured_at']})",
        "",
        "Each part killed in turn while a consumer system scores against a production endpoint without pause.",
        "Target: no failed request while the pipeline, MLflow, the hub or a model server is away.",
        "",
        "| killed | back after (s) | failed requests | served meanwhile |",
        "| --- | --- | --- | --- |",
    ]
    for kill in recovery["kills"]:
        lines.append(
            f"| {kill['part']} | {kill['recovery_seconds']} | {kill['failed_requests']} | {kill['served_requests']} |"
        )
    workspaces, busy = recovery["workspaces"], recovery["busy_starts"]
    lines += [
        "",
        f"Workspaces reachable, unrestarted, after a hub crash: **{workspaces['reachable_after_hub_crash']}/"
        f"{workspaces['workspaces']}** (hub back after {workspaces['hub_recovery_seconds']} s).",
        "",
        busy_line(busy),
        "",
    ]
    return lines


def busy_line(busy: dict) -> str:
    if not busy["cycles"]:
        return "`up`/`down` with every core busy: not measured in this run (`python -m bench --busy-starts N`)."
    return (
        f"`up`/`down` with every core busy: {busy['started']}/{busy['cycles']} started, "
        f"{busy['left_processes']} left a process behind; start times (s): "
        f"{', '.join(map(str, busy['start_seconds']))}."
    )
