/**
 * The Monitoring view's logic, free of the DOM: the pipeline's monitoring
 * answers as types, the words and numbers people read, and the geometry of
 * the plots (lines over time, baseline-versus-live histograms) as plain SVG
 * paths and boxes. Unit-tested with jest.
 *
 * The types follow the pipeline's monitoring API as the issue-15 contract
 * writes it (/work/helpers/monitoring-spec.md, "Pipeline API"): they are
 * written here because the pipeline's OpenAPI document, which src/contract.ts
 * is generated from, does not describe monitoring yet. Times are epoch seconds.
 */

import { formatNumber } from './model';
import type { ReleaseState } from './release';

export type MonitoringStage = 'production' | 'staging';
export type MonitoringWindow = 'day' | 'week' | 'promotion';

/** The stages a model is monitored in, in the order a validator looks at them. */
export const MONITORING_STAGES: readonly MonitoringStage[] = ['production', 'staging'];
/** The windows drift and traffic are read over, with the words the view shows. */
export const MONITORING_WINDOWS: readonly { value: MonitoringWindow; label: string }[] = [
  { value: 'day', label: 'Last day' },
  { value: 'week', label: 'Last week' },
  { value: 'promotion', label: 'Since promotion' }
];

export interface IStageVersion {
  version: string;
  since: number | null;
}

/** One model of `GET monitoring`. */
export interface IMonitoredModel {
  model: string;
  team: string;
  stages: { production?: IStageVersion; staging?: IStageVersion };
  drifted: boolean;
  checked_at: number | null;
  captured: number;
}

/** Drift of one feature (or of the predictions) against the baseline of the release's training data. */
export interface IFeatureDrift {
  name: string;
  kind: 'numeric' | 'categorical';
  psi: number | null;
  test?: 'ks' | 'chi2' | null;
  p_value?: number | null;
  drifted: boolean;
  /** Why there is no PSI (a column missing in live traffic). */
  reason?: string | null;
  baseline?: { edges?: (number | null)[]; categories?: string[]; shares: number[] };
  live?: { shares: number[]; rows: number; missing: number };
}

export interface IDrift {
  available: boolean;
  reason: string | null;
  baseline: { data: Record<string, string>; rows: number | null } | null;
  thresholds: { psi: number; p_value: number };
  checked_at: number | null;
  drifted: boolean;
  rows: number;
  features: IFeatureDrift[];
  prediction: IFeatureDrift | null;
  history: { t: number; version?: string; drifted?: boolean; psi: Record<string, number | null> }[];
}

export interface ITrafficPoint {
  t: number;
  requests: number;
  errors: number;
  p50_ms: number | null;
  p99_ms: number | null;
}

export interface IQualityMetric {
  name: string;
  value: number | null;
  /** Why there is no value (a metric that needs probabilities from an endpoint that answers labels). */
  reason?: string | null;
  /** The metric on the hold-out set when the version was approved. */
  approval: number | null;
  threshold: { min?: number; max?: number } | null;
}

/** `GET monitoring/{model}?stage=&window=`. */
export interface IModelMonitoring {
  model: string;
  team: string;
  stage: MonitoringStage;
  version: string | null;
  window: { name: MonitoringWindow; since: number | null; until: number | null };
  traffic: {
    bucket_seconds: number;
    requests: number;
    errors: number;
    p50_ms: number | null;
    p99_ms: number | null;
    series: ITrafficPoint[];
  };
  capture: { captured: number; dropped: number; sample_rate: number; retention_days: number; exclude_columns: string[] };
  drift: IDrift;
  quality: {
    available: boolean;
    reason: string | null;
    outcomes: number;
    metrics: IQualityMetric[];
    series: { t: number; values: Record<string, number | null> }[];
  };
}

export interface IMonitoringSettings {
  sample_rate: number;
  retention_days: number;
  exclude_columns: string[];
}

// --- what a model is monitored in -----------------------------------------------------------------

/** The stages `model` serves in, production first. */
export function monitoredStages(model: IMonitoredModel): MonitoringStage[] {
  return MONITORING_STAGES.filter(stage => model.stages[stage] !== undefined);
}

/** The stage whose traffic a release in `state` serves (its endpoint), or null for a release that serves none. */
export function stageOfRelease(state: ReleaseState): MonitoringStage | null {
  if (state === 'production') {
    return 'production';
  }
  return state === 'staging' || state === 'awaiting_approval' || state === 'approved' ? 'staging' : null;
}

/**
 * The drifted models and the stage whose release the sidebar marks: production
 * when the model serves there (what the list's `drifted` is about first), else staging.
 */
export function driftedModels(models: IMonitoredModel[]): Map<string, MonitoringStage> {
  return new Map(models.filter(model => model.drifted).map(model => [model.model, monitoredStages(model)[0] ?? 'production']));
}

/** The query of a monitoring request (and of the report link): only what is chosen. */
export function monitoringQuery(stage: MonitoringStage | null, window: MonitoringWindow | null): Record<string, string> {
  const query: Record<string, string> = {};
  if (stage) {
    query.stage = stage;
  }
  if (window) {
    query.window = window;
  }
  return query;
}

// --- words and numbers ----------------------------------------------------------------------------

/** Four significant digits without trailing zeros: 1.5, 0.7412, 1e-7 as "1.000e-7" (formatNumber's exponent range). */
export function formatValue(value: number): string {
  if (!Number.isFinite(value)) {
    return '–';
  }
  const plain = Math.abs(value) >= 1e-3 && Math.abs(value) < 1e6;
  return Number.isInteger(value) || !plain ? formatNumber(value) : String(Number(value.toPrecision(4)));
}

/** 12.34 -> "12.3 ms", 0.42 -> "0.42 ms", 1520 -> "1.52 s"; null -> "–". */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) {
    return '–';
  }
  if (ms >= 999.5) {
    return `${Number((ms / 1000).toPrecision(3))} s`;
  }
  return `${Number(ms.toPrecision(ms < 1 ? 2 : 3))} ms`;
}

/** 1234567 -> "1,234,567" (the same in every browser language, for the report and screenshots). */
export function formatCount(count: number | null | undefined): string {
  if (count === null || count === undefined || !Number.isFinite(count)) {
    return '–';
  }
  return String(Math.round(count)).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

/** A share as a percentage: 0.0123 -> "1.2%", 0 -> "0%"; null -> "–". */
export function formatShare(share: number | null | undefined): string {
  if (share === null || share === undefined || !Number.isFinite(share)) {
    return '–';
  }
  const percent = share * 100;
  return percent === 0 || percent >= 10 ? `${Math.round(percent * 10) / 10}%` : `${Number(percent.toPrecision(2))}%`;
}

/** The error share of `errors` among `requests`: "0.5%", or "–" without requests. */
export function errorRate(requests: number, errors: number): string {
  return requests > 0 ? formatShare(errors / requests) : '–';
}

/** A PSI with three decimals; "–" when there is none. */
export function formatPsi(psi: number | null | undefined): string {
  return psi === null || psi === undefined || !Number.isFinite(psi) ? '–' : psi.toFixed(3);
}

/** A p-value: two significant digits, "< 0.0001" below that; "–" when there is none. */
export function formatPValue(p: number | null | undefined): string {
  if (p === null || p === undefined || !Number.isFinite(p)) {
    return '–';
  }
  return p < 1e-4 ? '< 0.0001' : String(Number(p.toPrecision(2)));
}

/** The test behind a p-value, as a validator names it. */
export function testName(test: string | null | undefined): string {
  return test === 'ks' ? 'Kolmogorov–Smirnov' : test === 'chi2' ? 'chi-squared' : '–';
}

/** Why drift is unavailable, in a sentence; the pipeline's reason when it gives one. */
export function unavailableText(reason: string | null | undefined): string {
  const why = (reason ?? '').trim() || 'the pipeline gave no reason';
  return `Drift is unavailable for this version: ${why}. Traffic and latency are still shown.`;
}

export interface IDriftRow {
  name: string;
  kind: string;
  psi: string;
  test: string;
  pValue: string;
  drifted: boolean;
  /** Why there is no PSI, when there is none. */
  reason: string | null;
}

/** The drift table: drifted features first, then by PSI, highest first; features without a PSI last. */
export function driftRows(features: IFeatureDrift[]): IDriftRow[] {
  const order = (feature: IFeatureDrift) => (feature.psi === null || !Number.isFinite(feature.psi) ? -Infinity : feature.psi);
  return [...features]
    .sort((a, b) => Number(b.drifted) - Number(a.drifted) || order(b) - order(a) || a.name.localeCompare(b.name))
    .map(feature => ({
      name: feature.name,
      kind: feature.kind,
      psi: formatPsi(feature.psi),
      test: testName(feature.test),
      pValue: formatPValue(feature.p_value),
      drifted: feature.drifted,
      reason: feature.psi === null ? feature.reason ?? 'no value' : null
    }));
}

/** What each histogram bin holds: "< 1.5", "1.5 – 3", "≥ 3" for numbers (outer edges are infinite), the category else. */
export function binLabels(feature: IFeatureDrift): string[] {
  const baseline = feature.baseline;
  if (!baseline) {
    return [];
  }
  if (baseline.categories) {
    return baseline.categories.map(category => (category === '__other__' ? 'other' : category));
  }
  const edges = baseline.edges ?? [];
  return baseline.shares.map((_, index) => {
    const low = edges[index] ?? null;
    const high = edges[index + 1] ?? null;
    if (low === null && high === null) {
      return 'all';
    }
    if (low === null) {
      return `< ${formatValue(high as number)}`;
    }
    if (high === null) {
      return `≥ ${formatValue(low)}`;
    }
    return `${formatValue(low)} – ${formatValue(high)}`;
  });
}

export interface IQualityRow {
  name: string;
  value: string;
  approval: string;
  /** The change since approval, signed: "+0.012", "−0.05"; "–" without both values. */
  change: string;
  bound: string;
  /** Whether the value meets the team's threshold; null without a value or a threshold. */
  met: boolean | null;
  /** Why there is no value, when there is none. */
  reason: string | null;
}

/** The quality table: each metric now, at approval, the change, and the team's threshold met or not. */
export function qualityRows(metrics: IQualityMetric[]): IQualityRow[] {
  return metrics.map(metric => {
    const { value, approval, threshold } = metric;
    const bound = threshold?.min !== undefined ? `≥ ${formatValue(threshold.min)}` : threshold?.max !== undefined ? `≤ ${formatValue(threshold.max)}` : 'none';
    let met: boolean | null = null;
    if (value !== null && threshold) {
      met = threshold.min !== undefined ? value >= threshold.min : threshold.max !== undefined ? value <= threshold.max : null;
    }
    const delta = value !== null && approval !== null ? value - approval : null;
    // Rounded first: 0.74 - 0.78 is -0.040000000000000036 in floating point.
    const rounded = delta === null ? null : Number(delta.toPrecision(4));
    const change = rounded === null ? '–' : rounded === 0 ? '0' : `${rounded > 0 ? '+' : '−'}${formatValue(Math.abs(rounded))}`;
    return {
      name: metric.name,
      value: value === null ? '–' : formatValue(value),
      approval: approval === null ? '–' : formatValue(approval),
      change,
      bound,
      met,
      reason: value === null ? metric.reason ?? 'no outcomes yet' : null
    };
  });
}

// --- plot geometry --------------------------------------------------------------------------------

export interface IBox {
  width: number;
  height: number;
  margin: number;
}

export interface ILine {
  key: string;
  points: { t: number; value: number | null }[];
}

export interface IPlot {
  /** One SVG path per line ("M x y L x y ..."); a gap (null value) starts a new subpath. */
  paths: { key: string; d: string }[];
  /** The y of each reference value (the value at approval, a threshold), on the same scale. */
  references: { value: number; y: number }[];
  time: { min: number; max: number };
  value: { min: number; max: number };
}

const round = (n: number) => Math.round(n * 10) / 10;

/**
 * Lines over time in `box`, all on one scale: time on x, value on y (higher
 * up). The value scale starts at zero when `fromZero` (counts, latencies) and
 * takes in `references` (lines drawn across the plot), so they are always in
 * sight. A point alone between gaps is a zero-length segment (drawn as a dot
 * with round line caps).
 */
export function linePlot(lines: ILine[], box: IBox, options: { fromZero?: boolean; references?: number[] } = {}): IPlot {
  const references = (options.references ?? []).filter(Number.isFinite);
  const known = lines.flatMap(line => line.points.filter((p): p is { t: number; value: number } => p.value !== null && Number.isFinite(p.value)));
  const times = lines.flatMap(line => line.points.map(p => p.t));
  const values = [...known.map(p => p.value), ...references, ...(options.fromZero ? [0] : [])];
  const time = { min: times.length ? Math.min(...times) : 0, max: times.length ? Math.max(...times) : 1 };
  const value = { min: values.length ? Math.min(...values) : 0, max: values.length ? Math.max(...values) : 1 };
  const inner = { width: box.width - 2 * box.margin, height: box.height - 2 * box.margin };
  const x = (t: number) => round(box.margin + (time.max === time.min ? inner.width / 2 : ((t - time.min) / (time.max - time.min)) * inner.width));
  const y = (v: number) => round(box.margin + (value.max === value.min ? inner.height / 2 : (1 - (v - value.min) / (value.max - value.min)) * inner.height));
  const paths = lines.map(line => {
    const parts: string[] = [];
    let open = false;
    let alone = false;
    for (const point of [...line.points].sort((a, b) => a.t - b.t)) {
      if (point.value === null || !Number.isFinite(point.value)) {
        if (alone) {
          parts.push('l 0 0');
        }
        open = alone = false;
        continue;
      }
      parts.push(`${open ? 'L' : 'M'} ${x(point.t)} ${y(point.value)}`);
      alone = !open;
      open = true;
    }
    if (alone) {
      parts.push('l 0 0');
    }
    return { key: line.key, d: parts.join(' ') };
  });
  return { paths, references: references.map(v => ({ value: v, y: y(v) })), time, value };
}

export interface IBar {
  bin: number;
  series: 'baseline' | 'live';
  x: number;
  y: number;
  width: number;
  height: number;
  share: number;
}

/**
 * Baseline and live shares per bin as bars side by side in `box`, on one
 * scale (the largest share reaches the top). Missing shares count as zero.
 */
export function histogramBars(baseline: number[], live: number[], box: IBox): { bars: IBar[]; max: number; bins: number } {
  const bins = Math.max(baseline.length, live.length);
  const share = (shares: number[], index: number) => (Number.isFinite(shares[index]) ? Math.max(shares[index], 0) : 0);
  const max = Math.max(0, ...baseline.map((_, i) => share(baseline, i)), ...live.map((_, i) => share(live, i)));
  if (!bins) {
    return { bars: [], max, bins };
  }
  const slot = (box.width - 2 * box.margin) / bins;
  const tall = box.height - 2 * box.margin;
  const bars: IBar[] = [];
  for (let bin = 0; bin < bins; bin++) {
    (['baseline', 'live'] as const).forEach((series, side) => {
      const value = share(series === 'baseline' ? baseline : live, bin);
      const height = max > 0 ? (value / max) * tall : 0;
      bars.push({
        bin,
        series,
        x: round(box.margin + bin * slot + slot * (0.1 + 0.4 * side)),
        y: round(box.height - box.margin - height),
        width: round(slot * 0.4),
        height: round(height),
        share: value
      });
    });
  }
  return { bars, max, bins };
}

/** A feature's PSI over time from the drift history (null where a check had no value for it). */
export function psiHistory(drift: IDrift, feature: string): ILine {
  return { key: feature, points: drift.history.map(check => ({ t: check.t, value: check.psi[feature] ?? null })) };
}
