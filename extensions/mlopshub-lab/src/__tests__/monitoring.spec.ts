/**
 * The Monitoring view: its logic (words, numbers, plot geometry) and the view
 * itself against a fake server extension behind the real requestAPI (jsdom
 * has no fetch), as a validator uses it: what drifted is marked, a feature's
 * plots follow the row chosen, "Check drift now" posts and shows the new drift,
 * and a version without a training data version says why drift is unavailable.
 */

// JupyterLab's apputils is an ES module jest does not load; the view uses none of it (its parts module imports it).
jest.mock('@jupyterlab/apputils', () => ({ Clipboard: { copyToSystem: jest.fn() } }));

import {
  binLabels,
  driftedModels,
  driftRows,
  errorRate,
  formatCount,
  formatMs,
  formatPsi,
  formatPValue,
  formatShare,
  formatValue,
  histogramBars,
  IDrift,
  IFeatureDrift,
  IModelMonitoring,
  IMonitoredModel,
  linePlot,
  monitoredStages,
  monitoringQuery,
  psiHistory,
  qualityRows,
  stageOfRelease,
  unavailableText
} from '../monitoringmodel';

import { installFetch } from './browser';

// jsdom has no DragEvent, which Lumino's drag-and-drop module extends when it loads.
(globalThis as any).DragEvent ??= class DragEvent extends Event {};
const { MonitoringView } = jest.requireActual<typeof import('../monitoring')>('../monitoring');
const { ModelsSection } = jest.requireActual<typeof import('../models')>('../models');

const BOX = { width: 100, height: 50, margin: 5 };

function feature(name: string, psi: number | null, drifted: boolean, extra: Partial<IFeatureDrift> = {}): IFeatureDrift {
  return {
    name,
    kind: 'numeric',
    psi,
    test: 'ks',
    p_value: 0.2,
    drifted,
    baseline: { edges: [null, 1, 2, null], shares: [0.2, 0.5, 0.3] },
    live: { shares: [0.1, 0.3, 0.6], rows: 400, missing: 0 },
    ...extra
  };
}

function drift(extra: Partial<IDrift> = {}): IDrift {
  return {
    available: true,
    reason: null,
    baseline: { data: { 'data/loans.csv': 'f69f5b72bc79a92dc70c63c9aa142e36' }, rows: 1000 },
    thresholds: { psi: 0.2, p_value: 0.01 },
    checked_at: 1_780_000_000,
    drifted: true,
    rows: 400,
    features: [feature('age', 0.05, false), feature('income', 0.41, true, { p_value: 0.00001 })],
    prediction: null,
    history: [
      { t: 1_780_000_000, psi: { income: 0.1, age: 0.02 } },
      { t: 1_780_003_600, psi: { income: 0.41 } }
    ],
    ...extra
  };
}

function monitoring(extra: Partial<IModelMonitoring> = {}): IModelMonitoring {
  return {
    model: 'loans',
    team: 'sme-credit',
    stage: 'production',
    version: '3',
    window: { name: 'day', since: 1_779_996_400, until: 1_780_003_600 },
    traffic: {
      bucket_seconds: 3600,
      requests: 1234,
      errors: 6,
      p50_ms: 12.34,
      p99_ms: 88.1,
      series: [
        { t: 1_780_000_000, requests: 600, errors: 1, p50_ms: 12, p99_ms: 80 },
        { t: 1_780_003_600, requests: 634, errors: 5, p50_ms: 13, p99_ms: 95 }
      ]
    },
    capture: { captured: 1234, dropped: 2, sample_rate: 1, retention_days: 90, exclude_columns: ['iban'] },
    drift: drift(),
    quality: {
      available: true,
      reason: null,
      outcomes: 300,
      metrics: [{ name: 'auc', value: 0.74, approval: 0.78, threshold: { min: 0.75 } }],
      series: [{ t: 1_780_000_000, values: { auc: 0.74 } }]
    },
    ...extra
  };
}

const listed: IMonitoredModel[] = [
  { model: 'churn', team: 'retail-scoring', stages: { production: { version: '1', since: 1 } }, drifted: false, checked_at: null, captured: 10 },
  { model: 'loans', team: 'sme-credit', stages: { staging: { version: '4', since: 2 }, production: { version: '3', since: 1 } }, drifted: true, checked_at: 3, captured: 1234 }
];

describe('what a model is monitored in', () => {
  it('lists the stages a model serves in, production first', () => {
    expect(monitoredStages(listed[1])).toEqual(['production', 'staging']);
    expect(monitoredStages({ ...listed[1], stages: { staging: { version: '4', since: 2 } } })).toEqual(['staging']);
  });

  it('monitors a release in the stage its endpoint serves, and none that serves nothing', () => {
    expect(stageOfRelease('production')).toBe('production');
    expect(['staging', 'awaiting_approval', 'approved'].map(state => stageOfRelease(state as any))).toEqual(['staging', 'staging', 'staging']);
    expect(['gating', 'gates_failed', 'superseded', 'rolled_back'].map(state => stageOfRelease(state as any))).toEqual([null, null, null, null]);
  });

  it('marks only the models whose last check drifted, in production when they serve there', () => {
    expect([...driftedModels(listed)]).toEqual([['loans', 'production']]);
    const stagingOnly = { ...listed[1], stages: { staging: { version: '4', since: 2 } } };
    expect([...driftedModels([stagingOnly])]).toEqual([['loans', 'staging']]);
  });

  it('asks only for what is chosen', () => {
    expect(monitoringQuery('staging', 'week')).toEqual({ stage: 'staging', window: 'week' });
    expect(monitoringQuery(null, 'promotion')).toEqual({ window: 'promotion' });
  });
});

describe('words and numbers', () => {
  it('formats latencies in ms below a second and in s above', () => {
    expect([formatMs(0.42), formatMs(12.34), formatMs(999.4), formatMs(999.6), formatMs(1520), formatMs(null)]).toEqual(['0.42 ms', '12.3 ms', '999 ms', '1 s', '1.52 s', '–']);
  });

  it('formats counts with thousands separators, shares and error rates as percentages', () => {
    expect([formatCount(1234567), formatCount(12), formatCount(null)]).toEqual(['1,234,567', '12', '–']);
    expect([formatShare(0.0123), formatShare(0.5), formatShare(0), formatShare(1)]).toEqual(['1.2%', '50%', '0%', '100%']);
    expect([errorRate(200, 1), errorRate(0, 0)]).toEqual(['0.5%', '–']);
  });

  it('formats values with four significant digits and no trailing zeros', () => {
    expect([formatValue(1.5), formatValue(0.74123), formatValue(3), formatValue(1e-7), formatValue(NaN)]).toEqual(['1.5', '0.7412', '3', '1.000e-7', '–']);
  });

  it('formats PSI and p-values, tiny p-values as a bound', () => {
    expect([formatPsi(0.41234), formatPsi(null)]).toEqual(['0.412', '–']);
    expect([formatPValue(0.0123), formatPValue(0.00001), formatPValue(undefined)]).toEqual(['0.012', '< 0.0001', '–']);
  });

  it('says why drift is unavailable in the pipeline’s words, or that it gave none', () => {
    expect(unavailableText('release rel-7 has no training data version in its lineage')).toBe(
      'Drift is unavailable for this version: release rel-7 has no training data version in its lineage. Traffic and latency are still shown.'
    );
    expect(unavailableText(null)).toContain('the pipeline gave no reason');
  });

  it('lists drifted features first, then by PSI, features without a PSI last with the reason', () => {
    const rows = driftRows([feature('age', 0.05, false), feature('zip', null, false, { reason: 'not in live traffic' }), feature('income', 0.41, true), feature('debt', 0.15, false)]);
    expect(rows.map(row => [row.name, row.psi, row.drifted, row.reason])).toEqual([
      ['income', '0.410', true, null],
      ['debt', '0.150', false, null],
      ['age', '0.050', false, null],
      ['zip', '–', false, 'not in live traffic']
    ]);
    expect(rows[0].test).toBe('Kolmogorov–Smirnov');
  });

  it('names histogram bins by their edges (the outer ones open) or their categories', () => {
    expect(binLabels(feature('income', 0.4, true, { baseline: { edges: [null, 1.5, 3, null], shares: [0.3, 0.3, 0.4] } }))).toEqual(['< 1.5', '1.5 – 3', '≥ 3']);
    const categorical = feature('region', 0.1, false, { kind: 'categorical', baseline: { categories: ['north', '__other__'], shares: [0.6, 0.4] } });
    expect(binLabels(categorical)).toEqual(['north', 'other']);
  });

  it('compares quality with the value at approval and the team threshold', () => {
    const rows = qualityRows([
      { name: 'auc', value: 0.74, approval: 0.78, threshold: { min: 0.75 } },
      { name: 'log_loss', value: 0.3, approval: 0.25, threshold: { max: 0.35 } },
      { name: 'f1', value: null, approval: 0.6, threshold: null, reason: 'the endpoint answers labels; f1 needs them as 0/1' }
    ]);
    expect(rows.map(row => [row.name, row.value, row.approval, row.change, row.bound, row.met, row.reason])).toEqual([
      ['auc', '0.74', '0.78', '−0.04', '≥ 0.75', false, null],
      ['log_loss', '0.3', '0.25', '+0.05', '≤ 0.35', true, null],
      ['f1', '–', '0.6', '–', 'none', null, 'the endpoint answers labels; f1 needs them as 0/1']
    ]);
  });
});

describe('plot geometry', () => {
  it('draws lines over time on one scale, higher values up, from zero when asked', () => {
    const plot = linePlot(
      [
        { key: 'requests', points: [{ t: 0, value: 10 }, { t: 10, value: 20 }] },
        { key: 'errors', points: [{ t: 0, value: 0 }, { t: 10, value: 5 }] }
      ],
      BOX,
      { fromZero: true }
    );
    expect(plot.paths).toEqual([
      { key: 'requests', d: 'M 5 25 L 95 5' },
      { key: 'errors', d: 'M 5 45 L 95 35' }
    ]);
    expect([plot.value, plot.time]).toEqual([{ min: 0, max: 20 }, { min: 0, max: 10 }]);
  });

  it('breaks a line where a value is missing and shows a lone point as a dot', () => {
    const plot = linePlot([{ key: 'p99', points: [{ t: 2, value: 1 }, { t: 0, value: 1 }, { t: 1, value: null }, { t: 3, value: 2 }] }], BOX);
    // Sorted by time: t0 alone (then a gap), then t2 and t3 joined.
    expect(plot.paths[0].d).toBe('M 5 45 l 0 0 M 65 45 L 95 5');
  });

  it('keeps reference lines (approval, threshold) in sight', () => {
    const plot = linePlot([{ key: 'auc', points: [{ t: 0, value: 0.7 }, { t: 1, value: 0.72 }] }], BOX, { references: [0.8] });
    expect(plot.value.max).toBe(0.8);
    expect(plot.references).toEqual([{ value: 0.8, y: 5 }]);
  });

  it('draws a flat series and an empty one without dividing by zero', () => {
    expect(linePlot([{ key: 'x', points: [{ t: 5, value: 3 }, { t: 6, value: 3 }] }], BOX).paths[0].d).toBe('M 5 25 L 95 25');
    expect(linePlot([{ key: 'x', points: [] }], BOX).paths[0].d).toBe('');
  });

  it('scales baseline and live bars per bin to the largest share', () => {
    const { bars, max, bins } = histogramBars([0.25, 0.75], [0.5, 0.5], BOX);
    expect([max, bins]).toEqual([0.75, 2]);
    expect(bars.map(bar => [bar.bin, bar.series, bar.x, bar.width, bar.height, bar.y])).toEqual([
      [0, 'baseline', 9.5, 18, 13.3, 31.7],
      [0, 'live', 27.5, 18, 26.7, 18.3],
      [1, 'baseline', 54.5, 18, 40, 5],
      [1, 'live', 72.5, 18, 26.7, 18.3]
    ]);
  });

  it('draws missing live shares as empty bars', () => {
    const { bars } = histogramBars([0.5, 0.5], [], BOX);
    expect(bars.filter(bar => bar.series === 'live').map(bar => bar.height)).toEqual([0, 0]);
  });

  it("reads a feature's PSI over time from the history, gaps where a check had none", () => {
    expect(psiHistory(drift(), 'age').points).toEqual([
      { t: 1_780_000_000, value: 0.02 },
      { t: 1_780_003_600, value: null }
    ]);
  });
});

// --- the view against a fake server extension -------------------------------------------------------

interface ISent {
  method: string;
  path: string;
  query: Record<string, string>;
}

function release(id: string, version: string, state: string) {
  const endpoints = { staging: 'http://hub/services/models/loans/staging/invocations' };
  return { id, model_name: 'loans', version, model_uri: 'runs:/r/model', run_id: 'r', team: 'sme-credit', kind: 'online', description: '', publisher: 'ann', state, steps: [], gate_results: [], endpoints, approver: null, comment: '', reason: '', created: '', updated: '' };
}

/** The server extension: `monitoring`, `monitoring/loans` and a drift check, recording what was asked. */
class FakeServer {
  sent: ISent[] = [];
  model: IModelMonitoring = monitoring();
  checked: IDrift = drift({ drifted: false, features: [feature('income', 0.05, false)] });
  releases = [release('rel-3', '3', 'production'), release('rel-4', '4', 'awaiting_approval'), release('rel-2', '2', 'superseded')];

  async fetch(request: { url: string; method: string }): Promise<unknown> {
    const url = new URL(request.url);
    const path = url.pathname.replace(/^.*\/mlopshub-lab\//, '');
    const query: Record<string, string> = {};
    // (Lab's ServerConnection adds a cache-busting timestamp parameter: not ours.)
    url.searchParams.forEach((value, key) => /^\d+$/.test(key) || (query[key] = value));
    this.sent.push({ method: request.method, path, query });
    // As the pipeline: the stage and window asked for (production and the last day when not).
    const asked = { ...this.model, stage: query.stage ?? 'production', window: { ...this.model.window, name: query.window ?? 'day' } };
    const answers: Record<string, object> = {
      monitoring: { models: listed },
      'monitoring/loans': asked,
      'monitoring/loans/drift': this.checked,
      'experiments/workspaces': { workspaces: ['sme-credit'], current: 'sme-credit' },
      'models/logged': { models: [], next_page_token: null },
      releases: { releases: this.releases }
    };
    const body = answers[path] ?? { message: `no ${path}` };
    const status = 'message' in body ? 404 : 200;
    const text = JSON.stringify(body);
    return { ok: status < 400, status, statusText: String(status), text: async () => text };
  }
}

const server = new FakeServer();

beforeAll(() => installFetch(request => server.fetch(request)));

beforeEach(() => {
  server.sent = [];
  server.model = monitoring();
});

/** Let the view's requests and renders finish (the fake server answers at once). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) {
    await new Promise(resolve => setTimeout(resolve, 0));
  }
}

function all(view: { node: HTMLElement }, testid: string): HTMLElement[] {
  return Array.from(view.node.querySelectorAll<HTMLElement>(`[data-testid="${testid}"]`));
}

it('opens on the drifted model, marks it in the list, and shows its traffic, drift, quality and report', async () => {
  const view = new MonitoringView();
  await settle();
  const rows = all(view, 'mlopshub-monitoring-model');
  expect(rows.map(row => [row.dataset.model, row.dataset.drifted, row.querySelector('[data-testid="mlopshub-monitoring-drifted"]') !== null])).toEqual([
    ['churn', 'false', false],
    ['loans', 'true', true]
  ]);
  expect(server.sent.find(sent => sent.path === 'monitoring/loans')?.query).toEqual({ stage: 'production', window: 'day' });
  expect(all(view, 'mlopshub-monitoring-traffic')[0].textContent).toContain('1,234');
  expect(all(view, 'mlopshub-monitoring-drift-row').map(row => [row.dataset.feature, row.dataset.drifted])).toEqual([
    ['income', 'true'],
    ['age', 'false']
  ]);
  expect(all(view, 'mlopshub-monitoring-histogram')[0].dataset.feature).toBe('income');
  expect(all(view, 'mlopshub-monitoring-histogram')[0].querySelectorAll('rect.mlopshub-bar')).toHaveLength(6);
  expect(all(view, 'mlopshub-monitoring-psi-history')[0].querySelector('path')?.getAttribute('d')).toMatch(/^M .* L /);
  expect(all(view, 'mlopshub-monitoring-quality')[0].querySelector('[data-metric="auc"]')?.getAttribute('data-met')).toBe('false');
  const report = all(view, 'mlopshub-monitoring-report')[0] as HTMLAnchorElement;
  expect(report.getAttribute('href')).toMatch(/\/mlopshub-lab\/monitoring\/loans\/report\?stage=production&window=day$/);
  expect(report.target).toBe('_blank');
  view.dispose();
});

it("shows the chosen feature's plots and asks again for another window", async () => {
  const view = new MonitoringView();
  await settle();
  all(view, 'mlopshub-monitoring-drift-row')[1].click();
  expect(all(view, 'mlopshub-monitoring-histogram')[0].dataset.feature).toBe('age');
  const window = all(view, 'mlopshub-monitoring-window')[0] as HTMLSelectElement;
  window.value = 'promotion';
  window.dispatchEvent(new Event('change'));
  await settle();
  expect(server.sent.filter(sent => sent.path === 'monitoring/loans').pop()?.query).toEqual({ stage: 'production', window: 'promotion' });
  view.dispose();
});

it('checks drift now with a POST for the stage and window shown, and shows the new result', async () => {
  const view = new MonitoringView();
  view.select('loans', 'staging');
  await settle();
  (all(view, 'mlopshub-monitoring-check')[0] as HTMLButtonElement).click();
  await settle();
  expect(server.sent.filter(sent => sent.method === 'POST')).toEqual([{ method: 'POST', path: 'monitoring/loans/drift', query: { stage: 'staging', window: 'day' } }]);
  expect(all(view, 'mlopshub-monitoring-drift-row').map(row => [row.dataset.feature, row.dataset.drifted])).toEqual([['income', 'false']]);
  expect(all(view, 'mlopshub-monitoring-status')[0].textContent).toBe('Drift checked: no drift.');
  view.dispose();
});

it('says why drift is unavailable, still shows traffic, and offers no check', async () => {
  server.model = monitoring({ drift: drift({ available: false, reason: 'release rel-7 has no training data version in its lineage', features: [] }) });
  const view = new MonitoringView();
  await settle();
  expect(all(view, 'mlopshub-monitoring-drift-unavailable')[0].textContent).toContain('rel-7 has no training data version');
  expect(all(view, 'mlopshub-monitoring-drift-row')).toHaveLength(0);
  expect(all(view, 'mlopshub-monitoring-traffic')).toHaveLength(1);
  expect((all(view, 'mlopshub-monitoring-check')[0] as HTMLButtonElement).disabled).toBe(true);
  view.dispose();
});

it("marks the team's drifted model in production in the Models section, and opens its monitoring for a release's stage", async () => {
  const views = { openRelease: jest.fn(), openReview: jest.fn(), openCompare: jest.fn(), openAudit: jest.fn(), openMonitoring: jest.fn() };
  const section = new ModelsSection(views);
  await section.refresh();
  await settle();
  const rows = Array.from(section.node.querySelectorAll<HTMLElement>('[data-testid="mlopshub-release-row"]'));
  const marked = rows.map(row => [row.dataset.release, row.querySelector('[data-testid="mlopshub-monitoring-drifted"]') !== null, row.querySelector<HTMLElement>('[data-testid="mlopshub-open-monitoring"]')?.dataset.stage ?? null]);
  expect(marked).toEqual([
    ['rel-3', true, 'production'],
    ['rel-4', false, 'staging'],
    ['rel-2', false, null]
  ]);
  rows[1].querySelector<HTMLButtonElement>('[data-testid="mlopshub-open-monitoring"]')!.click();
  expect(views.openMonitoring).toHaveBeenCalledWith('loans', 'staging');
  section.dispose();
});
