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
  runs: {
    run_id: string;
    run_name: string | null;
    status?: string | null;
    start_time?: number | null;
    metrics: Record<string, number>;
    params?: Record<string, string>;
    lineage?: Record<string, string>;
  }[];
}

export interface IHistory {
  metric: string;
  runs: { run_id: string; points: { step: number; value: number | null; timestamp: number | null }[] }[];
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

/** Rows of values side by side for params or lineage: one per key (union over the runs), "–" where a run has none. */
export function sideBySide(maps: Record<string, string>[]): { key: string; values: string[]; differ: boolean }[] {
  const keys = [...new Set(maps.flatMap(map => Object.keys(map)))].sort();
  return keys.map(key => {
    const values = maps.map(map => map[key] ?? '–');
    return { key, values, differ: new Set(values).size > 1 };
  });
}

export interface IPlotLine {
  run_id: string;
  /** An SVG path ("M x y L x y ..."), in a box of the given width and height. */
  path: string;
  /** The last point, where the run's value is labelled. */
  last: { x: number; y: number; value: number } | null;
}

/**
 * A metric's history per run as SVG paths in a `width` × `height` box (step
 * on x, value on y, higher up), all runs on the same scales. A run with one
 * value is a point; values that are null are skipped.
 */
export function plotLines(history: IHistory, width: number, height: number, margin = 4): { lines: IPlotLine[]; min: number; max: number; steps: number } {
  const points = history.runs.map(run => run.points.filter((p): p is { step: number; value: number; timestamp: number | null } => p.value !== null));
  const values = points.flat().map(p => p.value);
  const steps = points.flat().map(p => p.step);
  const min = values.length ? Math.min(...values) : 0;
  const max = values.length ? Math.max(...values) : 1;
  const maxStep = steps.length ? Math.max(...steps) : 0;
  const minStep = steps.length ? Math.min(...steps) : 0;
  const x = (step: number) => margin + (maxStep === minStep ? (width - 2 * margin) / 2 : ((step - minStep) / (maxStep - minStep)) * (width - 2 * margin));
  const y = (value: number) => margin + (max === min ? (height - 2 * margin) / 2 : (1 - (value - min) / (max - min)) * (height - 2 * margin));
  const round = (n: number) => Math.round(n * 10) / 10;
  const lines = history.runs.map((run, index) => {
    const own = [...points[index]].sort((a, b) => a.step - b.step);
    const path = own.map((p, i) => `${i ? 'L' : 'M'} ${round(x(p.step))} ${round(y(p.value))}`).join(' ');
    const end = own[own.length - 1];
    return { run_id: run.run_id, path, last: end ? { x: round(x(end.step)), y: round(y(end.value)), value: end.value } : null };
  });
  return { lines, min, max, steps: maxStep - minStep + (steps.length ? 1 : 0) };
}

/** A DOM id for a tab from its kind and key (release id, run ids): the same item always gets the same tab. */
export function tabId(kind: string, ...keys: string[]): string {
  return ['mlopshub', kind, ...keys].join('-').replace(/[^A-Za-z0-9_-]/g, '_');
}
