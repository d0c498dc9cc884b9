import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { button, h } from './dom';
import {
  binLabels,
  driftRows,
  errorRate,
  formatCount,
  formatMs,
  formatPsi,
  formatPValue,
  formatShare,
  formatValue,
  histogramBars,
  IBox,
  IDrift,
  IFeatureDrift,
  ILine,
  IModelMonitoring,
  IMonitoredModel,
  IMonitoringSettings,
  linePlot,
  MONITORING_STAGES,
  MONITORING_WINDOWS,
  monitoredStages,
  monitoringQuery,
  MonitoringStage,
  MonitoringWindow,
  psiHistory,
  qualityRows,
  testName,
  unavailableText
} from './monitoringmodel';
import { errorBox, facts, labelled, messageOf, pollFor } from './parts';
import { RequestError, requestAPI } from './request';

const SVG = 'http://www.w3.org/2000/svg';
const BOX: IBox = { width: 360, height: 140, margin: 6 };
/** How often the open view looks at the pipeline again (it stands by while out of sight). */
const LOOK_EVERY = 60_000;
/** Quality metrics plotted at most (the table lists them all). */
const MAX_QUALITY_PLOTS = 4;
const COLOURS = {
  requests: 'var(--jp-brand-color1)',
  errors: 'var(--jp-error-color1)',
  p50: 'var(--jp-brand-color1)',
  p99: 'var(--jp-warn-color1)',
  psi: 'var(--jp-brand-color1)',
  quality: 'var(--jp-success-color1)'
};

function svg(tag: string, attributes: Record<string, string>, ...children: (SVGElement | string)[]): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, value);
  }
  element.append(...children);
  return element;
}

function section(title: string, testid: string, ...children: (Node | null)[]): HTMLElement {
  return h('section', { class: 'mlopshub-page-section', 'data-testid': testid }, h('h3', {}, title), ...children);
}

function when(seconds: number | null | undefined): string {
  return seconds === null || seconds === undefined ? '–' : new Date(seconds * 1000).toLocaleString();
}

/** The mark of a drifted model, the same in the view's list, its header and the sidebar's Models section. */
export function driftedMark(model: string): HTMLElement {
  return h(
    'span',
    { class: 'mlopshub-badge mlopshub-drifted', 'data-testid': 'mlopshub-monitoring-drifted', title: `${model} drifted from its training data at the last check` },
    'drifted'
  );
}

/**
 * The printable report of a model in a browser tab: through this server's
 * `monitoring/{model}/report`, which sends the tab on to the pipeline's page on
 * the hub (read there with the user's own hub login).
 */
export function reportUrl(model: string, stage: MonitoringStage | null, period: MonitoringWindow): string {
  const base = URLExt.join(ServerConnection.makeSettings().baseUrl, 'mlopshub-lab', 'monitoring', encodeURIComponent(model), 'report');
  return `${base}?${new URLSearchParams(monitoringQuery(stage, period))}`;
}

/** A value drawn across a plot: the value at approval (grey), or a threshold (red), both dashed. */
interface IReference {
  value: number;
  label: string;
  threshold: boolean;
}

/** Lines over time as a figure: the plot, its reference lines (dashed), the scales and a legend. */
function linesFigure(
  title: string,
  testid: string,
  lines: (ILine & { colour: string; label: string })[],
  format: (value: number) => string,
  options: { fromZero?: boolean; references?: IReference[] } = {}
): HTMLElement {
  const references = options.references ?? [];
  const plot = linePlot(lines, BOX, { fromZero: options.fromZero, references: references.map(r => r.value) });
  const chart = svg('svg', { viewBox: `0 0 ${BOX.width} ${BOX.height}`, width: String(BOX.width), height: String(BOX.height), role: 'img', 'aria-label': title });
  chart.append(svg('rect', { x: '0', y: '0', width: String(BOX.width), height: String(BOX.height), class: 'mlopshub-plot-frame' }));
  plot.references.forEach((reference, index) => {
    const { label, threshold } = references[index];
    const kind = threshold ? 'mlopshub-plot-reference mlopshub-plot-threshold' : 'mlopshub-plot-reference';
    chart.append(svg('line', { x1: String(BOX.margin), x2: String(BOX.width - BOX.margin), y1: String(reference.y), y2: String(reference.y), class: kind, 'data-reference': label }, svg('title', {}, `${label}: ${format(reference.value)}`)));
  });
  plot.paths.forEach((path, index) => {
    if (path.d) {
      chart.append(svg('path', { d: path.d, fill: 'none', stroke: lines[index].colour, 'stroke-width': '2', 'stroke-linecap': 'round', 'stroke-linejoin': 'round', 'data-line': path.key }));
    }
  });
  const empty = plot.paths.every(path => !path.d);
  const legend = h(
    'div',
    { class: 'mlopshub-legend' },
    ...lines.map(line => h('span', {}, h('span', { class: 'mlopshub-swatch', style: `background: ${line.colour}` }), line.label)),
    ...references.map(reference => h('span', {}, h('span', { class: `mlopshub-swatch mlopshub-swatch-reference${reference.threshold ? ' mlopshub-swatch-threshold' : ''}` }), reference.label))
  );
  return h(
    'figure',
    { class: 'mlopshub-plot', 'data-testid': testid },
    h('figcaption', {}, title),
    empty ? h('p', { class: 'mlopshub-empty' }, 'Nothing measured in this window.') : chart,
    empty ? null : h('div', { class: 'mlopshub-plot-scale' }, `${format(plot.value.min)} – ${format(plot.value.max)} · ${when(plot.time.min)} – ${when(plot.time.max)}`),
    empty ? null : legend
  );
}

/** A feature's baseline (training data) and live shares per bin, side by side. */
function histogramFigure(feature: IFeatureDrift, testid: string): HTMLElement {
  const labels = binLabels(feature);
  const { bars, max } = histogramBars(feature.baseline?.shares ?? [], feature.live?.shares ?? [], BOX);
  const chart = svg('svg', { viewBox: `0 0 ${BOX.width} ${BOX.height}`, width: String(BOX.width), height: String(BOX.height), role: 'img', 'aria-label': `${feature.name}: training data versus live traffic, share per bin` });
  chart.append(svg('rect', { x: '0', y: '0', width: String(BOX.width), height: String(BOX.height), class: 'mlopshub-plot-frame' }));
  for (const bar of bars) {
    chart.append(
      svg(
        'rect',
        { x: String(bar.x), y: String(bar.y), width: String(bar.width), height: String(bar.height), class: `mlopshub-bar mlopshub-bar-${bar.series}`, 'data-series': bar.series, 'data-bin': String(bar.bin) },
        svg('title', {}, `${labels[bar.bin] ?? `bin ${bar.bin + 1}`} · ${bar.series === 'baseline' ? 'training data' : 'live'}: ${formatShare(bar.share)}`)
      )
    );
  }
  const live = feature.live;
  return h(
    'figure',
    { class: 'mlopshub-plot', 'data-testid': testid, 'data-feature': feature.name },
    h('figcaption', {}, `${feature.name}: training data versus live`),
    bars.length ? chart : h('p', { class: 'mlopshub-empty' }, feature.reason ?? 'No distribution to compare.'),
    bars.length ? h('div', { class: 'mlopshub-plot-scale' }, `${labels[0] ?? ''} … ${labels[labels.length - 1] ?? ''} · highest bar ${formatShare(max)}${live ? ` · ${formatCount(live.rows)} live rows, ${formatShare(live.missing)} missing` : ''}`) : null,
    h('div', { class: 'mlopshub-legend' }, h('span', {}, h('span', { class: 'mlopshub-swatch mlopshub-bar-baseline' }), 'training data (baseline)'), h('span', {}, h('span', { class: 'mlopshub-swatch mlopshub-bar-live' }), 'live traffic'))
  );
}

/**
 * Monitoring in the main area: the models the user may see (a team its own,
 * validators every team's), drifted ones marked; for the chosen model, stage
 * and window, its traffic (requests, errors, p50/p99 latency over time),
 * captured and dropped records, drift per feature against the training data of
 * the version that serves (PSI and a distribution test, the baseline-versus-live
 * histogram and PSI over time of the feature chosen in the table), the drift of
 * its predictions, and its quality over time against the value at approval.
 * "Check drift now" asks the pipeline to compute it at once; "Printable report"
 * opens the pipeline's one-page report for the model-risk file.
 */
export class MonitoringView extends Widget {
  private _models: IMonitoredModel[] | string = [];
  private _model: string | null = null;
  private _stage: MonitoringStage | null = null;
  private _window: MonitoringWindow = 'day';
  private _data: IModelMonitoring | string | null = null;
  private _feature: string | null = null;
  private _status: HTMLElement;
  private _list: HTMLElement;
  private _detail: HTMLElement;
  private _poll: Poll;

  constructor() {
    super();
    this.addClass('mlopshub-page');
    this.addClass('mlopshub-monitoring-page');
    this.node.setAttribute('data-testid', 'mlopshub-monitoring-page');
    this._list = h('nav', { class: 'mlopshub-monitoring-list', 'aria-label': 'Monitored models' }, h('p', { class: 'mlopshub-empty' }, 'Loading the monitored models…'));
    this._detail = h('div', { class: 'mlopshub-monitoring-detail' });
    this._status = h('p', { class: 'mlopshub-hint', role: 'status', 'data-testid': 'mlopshub-monitoring-status' });
    this.node.append(h('h2', {}, 'Monitoring'), h('div', { class: 'mlopshub-monitoring-layout' }, this._list, this._detail));
    this._poll = pollFor(this.node, LOOK_EVERY, () => this._look());
    void this._look().catch(() => undefined);
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  /** Show `model` (in `stage`, or the first it serves in). */
  select(model: string, stage: MonitoringStage | null = null): void {
    if (model !== this._model) {
      this._feature = null;
      this._data = null;
    }
    this._model = model;
    this._stage = stage;
    this.node.setAttribute('data-model', model);
    this._renderList();
    this._renderDetail();
    void this._loadModel();
  }

  private async _look(): Promise<void> {
    await this._loadList();
    if (this._model) {
      await this._loadModel();
    }
  }

  private async _loadList(): Promise<void> {
    try {
      this._models = (await requestAPI<{ models: IMonitoredModel[] }>('monitoring')).models;
    } catch (error) {
      this._models = `The monitored models are unavailable: ${messageOf(error)}`;
      this._renderList();
      throw error; // the poll backs off
    }
    if (!this._model && this._models.length) {
      // The first drifted model, else the first: a validator opens the view to see what drifted.
      const first = this._models.find(model => model.drifted) ?? this._models[0];
      this._model = first.model;
      this.node.setAttribute('data-model', first.model);
    }
    this._renderList();
  }

  private _listed(model: string | null): IMonitoredModel | null {
    return typeof this._models === 'string' ? null : this._models.find(item => item.model === model) ?? null;
  }

  /** The stage asked for: the chosen one, else the first the model serves in (null: the pipeline's default). */
  private _stageFor(model: string): MonitoringStage | null {
    const listed = this._listed(model);
    return this._stage ?? (listed ? monitoredStages(listed)[0] ?? null : null);
  }

  private async _loadModel(): Promise<void> {
    const model = this._model;
    if (!model) {
      return;
    }
    const query = monitoringQuery(this._stageFor(model), this._window);
    this._status.replaceChildren(); // a check's outcome was about what was shown before
    let data: IModelMonitoring | string;
    try {
      data = await requestAPI<IModelMonitoring>(`monitoring/${encodeURIComponent(model)}`, {}, query);
    } catch (error) {
      data = `The monitoring of ${model} is unavailable: ${messageOf(error)}`;
    }
    if (model !== this._model) {
      return; // another model was chosen meanwhile
    }
    this._data = data;
    if (typeof data !== 'string') {
      this._stage = data.stage;
    }
    this._renderDetail();
  }

  private _renderList(): void {
    if (typeof this._models === 'string') {
      this._list.replaceChildren(errorBox(this._models), button('Retry', () => void this._look().catch(() => undefined), { 'data-testid': 'mlopshub-monitoring-retry' }));
      return;
    }
    if (!this._models.length) {
      this._list.replaceChildren(h('p', { class: 'mlopshub-empty' }, 'No model you may see serves in staging or production yet.'));
      return;
    }
    this._list.replaceChildren(
      h(
        'ul',
        {},
        ...this._models.map(model => {
          const stages = monitoredStages(model)
            .map(stage => `${stage} v${model.stages[stage]?.version}`)
            .join(' · ');
          const pick = button(model.model, () => this.select(model.model), { class: 'mlopshub-monitoring-pick', 'aria-current': model.model === this._model ? 'true' : undefined });
          return h(
            'li',
            { class: `mlopshub-monitoring-model${model.model === this._model ? ' mlopshub-selected' : ''}`, 'data-testid': 'mlopshub-monitoring-model', 'data-model': model.model, 'data-team': model.team, 'data-drifted': String(model.drifted) },
            pick,
            model.drifted ? driftedMark(model.model) : null,
            h('div', { class: 'mlopshub-hint' }, `${model.team}${stages ? ` · ${stages}` : ''} · ${formatCount(model.captured)} captured`)
          );
        })
      )
    );
  }

  private _renderDetail(): void {
    const model = this._model;
    if (!model) {
      this._detail.replaceChildren();
      return;
    }
    const data = this._data;
    const header = this._header(model, typeof data === 'string' || data === null ? null : data);
    if (data === null) {
      this._detail.replaceChildren(header, h('p', { class: 'mlopshub-empty' }, `Loading the monitoring of ${model}…`));
      return;
    }
    if (typeof data === 'string') {
      this._detail.replaceChildren(header, errorBox(data));
      return;
    }
    this._detail.setAttribute('data-stage', data.stage);
    this._detail.setAttribute('data-window', data.window?.name ?? this._window);
    this._detail.replaceChildren(header, h('div', { class: 'mlopshub-page-grid' }, this._traffic(data), this._capture(data), this._drift(data), this._quality(data)));
  }

  private _header(model: string, data: IModelMonitoring | null): HTMLElement {
    const listed = this._listed(model);
    const served = listed ? monitoredStages(listed) : [];
    const stage = h('select', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-monitoring-stage', 'aria-label': 'Stage' }) as HTMLSelectElement;
    for (const name of served.length ? served : MONITORING_STAGES) {
      stage.append(h('option', { value: name, selected: name === (data?.stage ?? this._stageFor(model)) }, name));
    }
    stage.addEventListener('change', () => {
      this._stage = stage.value as MonitoringStage;
      void this._loadModel();
    });
    const windowSelect = h('select', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-monitoring-window', 'aria-label': 'Window' }) as HTMLSelectElement;
    for (const choice of MONITORING_WINDOWS) {
      windowSelect.append(h('option', { value: choice.value, selected: choice.value === this._window }, choice.label));
    }
    windowSelect.addEventListener('change', () => {
      this._window = windowSelect.value as MonitoringWindow;
      void this._loadModel();
    });
    const check = button('Check drift now', () => void this._check(check), { class: 'jp-Button jp-mod-accept mlopshub-button', 'data-testid': 'mlopshub-monitoring-check', disabled: data !== null && !data.drift.available, title: data !== null && !data.drift.available ? 'Drift is unavailable for this version' : undefined });
    const report = h('a', { class: 'jp-Button mlopshub-button mlopshub-report-link', href: reportUrl(model, data?.stage ?? this._stageFor(model), this._window), target: '_blank', rel: 'noopener', 'data-testid': 'mlopshub-monitoring-report' }, 'Printable report');
    const drifted = data ? data.drift.available && data.drift.drifted : listed?.drifted ?? false;
    const range = data?.window ? `${when(data.window.since)} – ${when(data.window.until)}` : '';
    return h(
      'header',
      { class: 'mlopshub-page-header' },
      h('h3', {}, `${model}${data?.version ? ` v${data.version}` : ''} `, drifted ? driftedMark(model) : null),
      h('p', { class: 'mlopshub-hint' }, [data?.team ?? listed?.team, data ? `${data.stage}` : null, range].filter(Boolean).join(' · ')),
      h('div', { class: 'mlopshub-actions' }, labelled('Stage', stage), labelled('Window', windowSelect), button('Refresh', () => void this._look().catch(() => undefined), { 'data-testid': 'mlopshub-monitoring-refresh' }), check, report),
      this._status
    );
  }

  private async _check(trigger: HTMLButtonElement): Promise<void> {
    const model = this._model;
    if (!model) {
      return;
    }
    trigger.disabled = true;
    this._status.textContent = `Checking the drift of ${model}…`;
    try {
      const drift = await requestAPI<IDrift>(`monitoring/${encodeURIComponent(model)}/drift`, { method: 'POST', body: '{}' }, monitoringQuery(this._stageFor(model), this._window));
      if (model === this._model && this._data && typeof this._data !== 'string') {
        this._data = { ...this._data, drift };
        this._status.textContent = `Drift checked: ${drift.available ? (drift.drifted ? 'drifted' : 'no drift') : 'unavailable'}.`;
        this._renderDetail();
      }
      await this._loadList().catch(() => undefined); // the list's marks follow the new check
    } catch (error) {
      this._status.replaceChildren(errorBox(`The drift check failed: ${messageOf(error)}`));
      trigger.disabled = false;
    }
  }

  private _traffic(data: IModelMonitoring): HTMLElement {
    const traffic = data.traffic;
    const series = traffic.series ?? [];
    const minutes = traffic.bucket_seconds ? `per ${formatValue(traffic.bucket_seconds / 60)} min` : '';
    return section(
      'Traffic',
      'mlopshub-monitoring-traffic',
      facts([
        ['requests', formatCount(traffic.requests)],
        ['errors', `${formatCount(traffic.errors)} (${errorRate(traffic.requests, traffic.errors)})`],
        ['p50 latency', formatMs(traffic.p50_ms)],
        ['p99 latency', formatMs(traffic.p99_ms)]
      ]),
      h(
        'div',
        { class: 'mlopshub-plots' },
        linesFigure(
          `Requests and errors ${minutes}`,
          'mlopshub-monitoring-requests-plot',
          [
            { key: 'requests', label: 'requests', colour: COLOURS.requests, points: series.map(p => ({ t: p.t, value: p.requests })) },
            { key: 'errors', label: 'errors', colour: COLOURS.errors, points: series.map(p => ({ t: p.t, value: p.errors })) }
          ],
          formatCount,
          { fromZero: true }
        ),
        linesFigure(
          'Latency',
          'mlopshub-monitoring-latency-plot',
          [
            { key: 'p50', label: 'p50', colour: COLOURS.p50, points: series.map(p => ({ t: p.t, value: p.p50_ms })) },
            { key: 'p99', label: 'p99', colour: COLOURS.p99, points: series.map(p => ({ t: p.t, value: p.p99_ms })) }
          ],
          formatMs,
          { fromZero: true }
        )
      )
    );
  }

  private _capture(data: IModelMonitoring): HTMLElement {
    const capture = data.capture;
    const sampleRate = h('input', { class: 'jp-mod-styled', type: 'number', min: '0', max: '1', step: '0.01', value: String(capture.sample_rate), 'data-testid': 'mlopshub-monitoring-sample-rate' }) as HTMLInputElement;
    const retention = h('input', { class: 'jp-mod-styled', type: 'number', min: '1', max: '3650', step: '1', value: String(capture.retention_days), 'data-testid': 'mlopshub-monitoring-retention' }) as HTMLInputElement;
    const excluded = h('input', { class: 'jp-mod-styled', value: capture.exclude_columns.join(', '), placeholder: 'iban, name', 'data-testid': 'mlopshub-monitoring-exclude' }) as HTMLInputElement;
    const status = h('div', { class: 'mlopshub-status' });
    const save = async () => {
      const change: IMonitoringSettings = {
        sample_rate: Number(sampleRate.value),
        retention_days: Number(retention.value),
        exclude_columns: excluded.value
          .split(',')
          .map(column => column.trim())
          .filter(Boolean)
      };
      try {
        const saved = await requestAPI<IMonitoringSettings>(`monitoring/${encodeURIComponent(data.model)}/settings`, { method: 'PUT', body: JSON.stringify(change) });
        if (this._data === data) {
          this._data = { ...data, capture: { ...data.capture, ...saved } };
          this._renderDetail();
        }
      } catch (error) {
        const field = error instanceof RequestError && error.field ? ` (${error.field})` : '';
        status.replaceChildren(errorBox(`The settings were not saved${field}: ${messageOf(error)}`));
      }
    };
    return section(
      'Capture',
      'mlopshub-monitoring-capture',
      facts([
        ['captured', formatCount(capture.captured)],
        ['dropped', formatCount(capture.dropped)],
        ['sample rate', formatShare(capture.sample_rate)],
        ['retention', `${formatCount(capture.retention_days)} days`],
        ['excluded columns', capture.exclude_columns.length ? capture.exclude_columns.join(', ') : 'none']
      ]),
      capture.dropped > 0 ? h('p', { class: 'mlopshub-hint', 'data-testid': 'mlopshub-monitoring-dropped' }, `${formatCount(capture.dropped)} record(s) were dropped: the capture queue was full. Requests were answered; drift and quality read only what was captured.`) : null,
      h(
        'details',
        { class: 'mlopshub-monitoring-settings', 'data-testid': 'mlopshub-monitoring-settings' },
        h('summary', {}, 'Capture settings'),
        labelled('Sample rate (0 to 1)', sampleRate),
        labelled('Retention (days)', retention),
        labelled('Columns never captured', excluded),
        h('div', { class: 'mlopshub-actions' }, button('Save', () => void save(), { class: 'jp-Button jp-mod-accept mlopshub-button', 'data-testid': 'mlopshub-monitoring-save-settings' })),
        status
      )
    );
  }

  private _drift(data: IModelMonitoring): HTMLElement {
    const drift = data.drift;
    if (!drift.available) {
      return section('Drift', 'mlopshub-monitoring-drift', h('p', { class: 'mlopshub-monitoring-unavailable', 'data-testid': 'mlopshub-monitoring-drift-unavailable' }, unavailableText(drift.reason)));
    }
    const rows = driftRows(drift.features);
    const chosen = drift.features.find(feature => feature.name === this._feature) ?? drift.features.find(feature => feature.name === rows[0]?.name) ?? null;
    const table = h(
      'table',
      { class: 'mlopshub-table mlopshub-drift-table' },
      h('thead', {}, h('tr', {}, ...['Feature', 'Kind', 'PSI', 'Test', 'p-value', ''].map(label => h('th', {}, label)))),
      h(
        'tbody',
        {},
        ...rows.map(row => {
          const line = h(
            'tr',
            {
              class: `mlopshub-drift-row${row.drifted ? ' mlopshub-drift-drifted' : ''}${row.name === chosen?.name ? ' mlopshub-selected' : ''}`,
              'data-testid': 'mlopshub-monitoring-drift-row',
              'data-feature': row.name,
              'data-drifted': String(row.drifted),
              'aria-selected': String(row.name === chosen?.name),
              tabindex: '0',
              title: `Show ${row.name}'s distributions and PSI over time`
            },
            h('td', {}, row.name),
            h('td', {}, row.kind),
            h('td', { class: 'mlopshub-metric' }, row.psi),
            h('td', {}, row.test),
            h('td', { class: 'mlopshub-metric' }, row.pValue),
            h('td', {}, row.drifted ? '⚠ drifted' : row.reason ?? '')
          );
          const show = () => {
            this._feature = row.name;
            this._renderDetail();
          };
          line.addEventListener('click', show);
          line.addEventListener('keydown', event => (event.key === 'Enter' || event.key === ' ') && show());
          return line;
        })
      )
    );
    const versions = Object.entries(drift.baseline?.data ?? {}).map(([path, hash]) => `${path} @ ${hash.slice(0, 8)}`);
    return section(
      'Drift against the training data',
      'mlopshub-monitoring-drift',
      facts([
        ['checked', when(drift.checked_at)],
        ['live rows', formatCount(drift.rows)],
        ['training data', versions.length ? versions.join(', ') : '–'],
        ['baseline rows', formatCount(drift.baseline?.rows)],
        ['drifted when', `PSI ≥ ${formatValue(drift.thresholds.psi)} (test p-value threshold ${formatValue(drift.thresholds.p_value)})`]
      ]),
      rows.length ? table : h('p', { class: 'mlopshub-empty' }, 'No feature was compared yet: check drift now, or wait for the schedule.'),
      chosen
        ? h(
            'div',
            { class: 'mlopshub-plots' },
            histogramFigure(chosen, 'mlopshub-monitoring-histogram'),
            linesFigure(`${chosen.name}: PSI over time`, 'mlopshub-monitoring-psi-history', [{ ...psiHistory(drift, chosen.name), label: 'PSI', colour: COLOURS.psi }], formatPsi, {
              fromZero: true,
              references: [{ value: drift.thresholds.psi, label: 'drift threshold', threshold: true }]
            })
          )
        : null,
      this._prediction(drift)
    );
  }

  private _prediction(drift: IDrift): HTMLElement {
    const prediction = drift.prediction;
    if (!prediction) {
      return h('div', { 'data-testid': 'mlopshub-monitoring-prediction' }, h('h4', {}, 'Prediction drift'), h('p', { class: 'mlopshub-empty' }, 'No prediction baseline for this version.'));
    }
    return h(
      'div',
      { class: 'mlopshub-monitoring-prediction', 'data-testid': 'mlopshub-monitoring-prediction', 'data-drifted': String(prediction.drifted) },
      h('h4', {}, 'Prediction drift'),
      facts([
        ['PSI', formatPsi(prediction.psi)],
        [testName(prediction.test), formatPValue(prediction.p_value)],
        ['drifted', prediction.drifted ? '⚠ yes' : 'no']
      ]),
      h(
        'div',
        { class: 'mlopshub-plots' },
        histogramFigure(prediction, 'mlopshub-monitoring-prediction-histogram'),
        linesFigure('Predictions: PSI over time', 'mlopshub-monitoring-prediction-history', [{ ...psiHistory(drift, '__prediction__'), label: 'PSI', colour: COLOURS.psi }], formatPsi, {
          fromZero: true,
          references: [{ value: drift.thresholds.psi, label: 'drift threshold', threshold: true }]
        })
      )
    );
  }

  private _quality(data: IModelMonitoring): HTMLElement {
    const quality = data.quality;
    if (!quality.available) {
      return section('Quality', 'mlopshub-monitoring-quality', h('p', { class: 'mlopshub-empty', 'data-testid': 'mlopshub-monitoring-quality-unavailable' }, `Quality is unavailable: ${quality.reason ?? 'no outcomes were posted for this window'}.`));
    }
    const rows = qualityRows(quality.metrics);
    const table = h(
      'table',
      { class: 'mlopshub-table' },
      h('thead', {}, h('tr', {}, ...['Metric', 'Now', 'At approval', 'Change', 'Team threshold', ''].map(label => h('th', {}, label)))),
      h(
        'tbody',
        {},
        ...rows.map(row =>
          h(
            'tr',
            { 'data-metric': row.name, 'data-met': row.met === null ? 'none' : String(row.met) },
            h('td', {}, row.name),
            h('td', { class: 'mlopshub-metric', title: row.reason ?? undefined }, row.value),
            h('td', { class: 'mlopshub-metric' }, row.approval),
            h('td', { class: 'mlopshub-metric' }, row.change),
            h('td', {}, row.bound),
            h('td', { class: row.met === false ? 'mlopshub-gate-failed' : 'mlopshub-gate-passed' }, row.reason ?? (row.met === null ? '' : row.met ? '✓ met' : '✗ not met'))
          )
        )
      )
    );
    const plots = quality.metrics.slice(0, MAX_QUALITY_PLOTS).map(metric => {
      const references = [
        ...(metric.approval !== null ? [{ value: metric.approval, label: 'at approval', threshold: false }] : []),
        ...(metric.threshold?.min !== undefined ? [{ value: metric.threshold.min, label: 'team minimum', threshold: true }] : []),
        ...(metric.threshold?.max !== undefined ? [{ value: metric.threshold.max, label: 'team maximum', threshold: true }] : [])
      ];
      const points = quality.series.map(point => ({ t: point.t, value: point.values[metric.name] ?? null }));
      return linesFigure(`${metric.name} over time`, 'mlopshub-monitoring-quality-plot', [{ key: metric.name, label: metric.name, colour: COLOURS.quality, points }], formatValue, { references });
    });
    return section('Quality', 'mlopshub-monitoring-quality', facts([['outcomes', formatCount(quality.outcomes)]]), rows.length ? table : null, h('div', { class: 'mlopshub-plots' }, ...plots));
  }
}
