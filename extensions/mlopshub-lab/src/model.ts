/**
 * The sidebar's logic, free of the DOM: formatting, sorting, comparing, and
 * the guard that keeps a long operation from starting twice. Unit-tested with jest.
 */

export interface IProject {
  root: string;
  dvc: boolean;
  git: boolean;
  remote: { name: string; url: string } | null;
}

export interface IDataset {
  path: string;
  size: number | null;
  hash: string | null;
  short_hash: string | null;
  status: string[];
}

export interface IVersion {
  commit: string;
  short: string;
  message: string;
  author: string;
  date: string;
  hash: string | null;
}

export interface IRun {
  run_id: string;
  run_name: string | null;
  status: string;
  start_time: number | null;
  end_time: number | null;
  duration_ms: number | null;
  metrics: Record<string, number>;
  params: Record<string, string>;
  lineage: Record<string, string>;
}

export interface ICompare {
  metrics: string[];
  runs: { run_id: string; run_name: string | null; metrics: Record<string, number> }[];
}

const UNITS = ['B', 'KB', 'MB', 'GB', 'TB'];

/** 1536 -> "1.5 KB"; null -> "–". */
export function formatBytes(size: number | null | undefined): string {
  if (size === null || size === undefined) {
    return '–';
  }
  let value = size;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** 65000 -> "1m 5s"; null -> "–". */
export function formatDuration(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) {
    return '–';
  }
  const seconds = Math.round(ms / 1000);
  if (seconds < 60) {
    return `${seconds}s`;
  }
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) {
    return `${minutes}m ${seconds % 60}s`;
  }
  return `${Math.floor(minutes / 60)}h ${minutes % 60}m`;
}

/** Words a person reads for the server's status flags; an empty list is "up to date". */
export function statusLabels(status: string[]): string[] {
  const words: Record<string, string> = {
    changed: 'changed',
    not_pushed: 'not pushed',
    missing: 'missing locally',
    invalid: 'invalid .dvc file'
  };
  return status.length ? status.map(flag => words[flag] ?? flag) : ['up to date'];
}

export type SortKey = 'start_time' | 'duration_ms' | 'status' | 'run_name' | `metrics.${string}` | `params.${string}`;

function sortValue(run: IRun, key: SortKey): number | string | null {
  if (key.startsWith('metrics.')) {
    return run.metrics[key.slice('metrics.'.length)] ?? null;
  }
  if (key.startsWith('params.')) {
    return run.params[key.slice('params.'.length)] ?? null;
  }
  return (run as any)[key] ?? null;
}

/** Runs sorted by a column; runs without a value go last in either direction. */
export function sortRuns(runs: IRun[], key: SortKey, descending: boolean): IRun[] {
  return [...runs].sort((a, b) => {
    const x = sortValue(a, key);
    const y = sortValue(b, key);
    if (x === null && y === null) {
      return 0;
    }
    if (x === null) {
      return 1;
    }
    if (y === null) {
      return -1;
    }
    const order = typeof x === 'number' && typeof y === 'number' ? x - y : String(x).localeCompare(String(y));
    return descending ? -order : order;
  });
}

/** The metric names shown as columns: the most common ones among the runs, at most `count`. */
export function keyMetrics(runs: IRun[], count = 3): string[] {
  const seen = new Map<string, number>();
  for (const run of runs) {
    for (const name of Object.keys(run.metrics)) {
      seen.set(name, (seen.get(name) ?? 0) + 1);
    }
  }
  return [...seen.entries()]
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .slice(0, count)
    .map(([name]) => name);
}

/** Metrics where a lower value is better: losses, errors and their usual abbreviations. */
const LOWER_IS_BETTER = /loss|error|(^|[^a-z])(r?mse|mae|mape|brier|deviance|perplexity)([^a-z]|$)/i;

/** Whether a lower value of ``metric`` is better (log_loss, rmse, val_error, ...); otherwise higher is. */
export function lowerIsBetter(metric: string): boolean {
  return LOWER_IS_BETTER.test(metric);
}

/** Rows of a side-by-side comparison: one per metric, one cell per run ("–" where absent), the best marked. */
export function compareRows(compare: ICompare): { metric: string; values: string[]; best: number | null }[] {
  return compare.metrics.map(metric => {
    const values = compare.runs.map(run => run.metrics[metric]);
    const numbers = values.filter((v): v is number => typeof v === 'number');
    const pick = lowerIsBetter(metric) ? Math.min : Math.max;
    const best = numbers.length ? values.indexOf(pick(...numbers)) : null;
    return {
      metric,
      values: values.map(v => (typeof v === 'number' ? formatNumber(v) : '–')),
      best
    };
  });
}

/** Four significant digits, no exponent for everyday values. */
export function formatNumber(value: number): string {
  if (Number.isInteger(value)) {
    return String(value);
  }
  return Math.abs(value) >= 1e-3 && Math.abs(value) < 1e6 ? value.toPrecision(4) : value.toExponential(3);
}

/** The lineage tags of a run, in the order a reviewer reads them. */
export function lineageOf(tags: Record<string, string>): [string, string][] {
  const order = ['mlopshub.git.commit', 'mlopshub.git.dirty', 'mlopshub.notebook', 'mlopshub.profile', 'mlopshub.image'];
  const known = order.filter(key => key in tags).map(key => [key.replace('mlopshub.', ''), tags[key]] as [string, string]);
  const data = Object.keys(tags)
    .filter(key => key.startsWith('mlopshub.data.') && key !== 'mlopshub.data.count')
    .sort()
    .map(key => [`data ${key.slice('mlopshub.data.'.length)}`, tags[key].slice(0, 8)] as [string, string]);
  return [...known, ...data];
}

/**
 * Keeps a long operation (save, push, pull, restore) from starting twice:
 * `run` refuses while another runs and always releases when it ends.
 */
export class OperationGuard {
  private _running: string | null = null;

  get running(): string | null {
    return this._running;
  }

  async run<T>(name: string, operation: () => Promise<T>): Promise<T> {
    if (this._running) {
      throw new Error(`${this._running} is still running; wait for it to finish`);
    }
    this._running = name;
    try {
      return await operation();
    } finally {
      this._running = null;
    }
  }
}
