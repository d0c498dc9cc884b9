import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { compareRows, formatNumber, ICompare, IHistory, lineageOf, lowerIsBetter, plotLines, sideBySide } from './model';
import { errorBox, messageOf } from './parts';
import { requestAPI } from './request';

const SVG = 'http://www.w3.org/2000/svg';
const PLOT_WIDTH = 320;
const PLOT_HEIGHT = 160;
/** Plots drawn at most: one per metric, the comparison's first ones. */
const MAX_PLOTS = 8;
/** Line colours of the runs, in order (JupyterLab's own palette where it has one). */
const COLOURS = ['var(--jp-brand-color1)', 'var(--jp-warn-color1)', 'var(--jp-success-color1)', 'var(--jp-error-color1)', '#8e44ad', '#16a085', '#7f8c8d', '#d35400'];

function svg(tag: string, attributes: Record<string, string>): SVGElement {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) {
    element.setAttribute(name, value);
  }
  return element;
}

/**
 * Runs side by side in the main area: metrics (the best marked, lower is
 * better for losses and errors), params and lineage tags (rows that differ
 * marked), and a plot per metric of its history in each run, in plain SVG.
 */
export class CompareView extends Widget {
  constructor(
    private readonly _workspace: string | null,
    private readonly _runIds: string[]
  ) {
    super();
    this.addClass('mlopshub-page');
    this.addClass('mlopshub-compare-page');
    this.node.setAttribute('data-testid', 'mlopshub-compare-page');
    this.node.append(h('p', { class: 'mlopshub-empty' }, 'Loading the runs…'));
    void this._load();
  }

  private async _load(): Promise<void> {
    let compare: ICompare;
    try {
      compare = await requestAPI<ICompare>('experiments/compare', {}, { workspace: this._workspace ?? undefined, run: this._runIds });
    } catch (error) {
      this.node.replaceChildren(errorBox(`The runs are unavailable: ${messageOf(error)}`));
      return;
    }
    const names = compare.runs.map(run => run.run_name ?? run.run_id.slice(0, 8));
    const plots = h('div', { class: 'mlopshub-plots' });
    this.node.replaceChildren(
      h('h2', {}, `Comparing ${compare.runs.length} runs`),
      h('div', { class: 'mlopshub-legend' }, ...names.map((name, index) => h('span', { class: 'mlopshub-legend-item' }, h('span', { class: 'mlopshub-swatch', style: `background: ${COLOURS[index % COLOURS.length]}` }), name))),
      h('h3', {}, 'Metrics'),
      this._metricsTable(compare, names),
      h('h3', {}, 'Metric history'),
      plots,
      h('h3', {}, 'Params'),
      this._table('mlopshub-compare-params', 'Param', names, sideBySide(compare.runs.map(run => run.params ?? {}))),
      h('h3', {}, 'Lineage'),
      this._table('mlopshub-compare-lineage', 'Tag', names, sideBySide(compare.runs.map(run => Object.fromEntries(lineageOf(run.lineage ?? {})))))
    );
    await Promise.all(compare.metrics.slice(0, MAX_PLOTS).map(metric => this._plot(metric, plots)));
  }

  private _metricsTable(compare: ICompare, names: string[]): HTMLElement {
    return h(
      'table',
      { class: 'mlopshub-table', 'data-testid': 'mlopshub-compare-metrics' },
      h('thead', {}, h('tr', {}, h('th', {}, 'Metric'), ...names.map(name => h('th', {}, name)))),
      h(
        'tbody',
        {},
        ...compareRows(compare).map(row =>
          h(
            'tr',
            { 'data-metric': row.metric },
            h('td', { title: lowerIsBetter(row.metric) ? 'lower is better' : 'higher is better' }, `${row.metric} ${lowerIsBetter(row.metric) ? '↓' : '↑'}`),
            ...row.values.map((value, index) => h('td', { class: index === row.best ? 'mlopshub-metric mlopshub-best' : 'mlopshub-metric' }, value))
          )
        )
      )
    );
  }

  private _table(testid: string, label: string, names: string[], rows: { key: string; values: string[]; differ: boolean }[]): HTMLElement {
    if (!rows.length) {
      return h('p', { class: 'mlopshub-empty', 'data-testid': testid }, 'None recorded.');
    }
    return h(
      'table',
      { class: 'mlopshub-table', 'data-testid': testid },
      h('thead', {}, h('tr', {}, h('th', {}, label), ...names.map(name => h('th', {}, name)))),
      h('tbody', {}, ...rows.map(row => h('tr', { 'data-key': row.key, class: row.differ ? 'mlopshub-differs' : undefined }, h('td', {}, row.key), ...row.values.map(value => h('td', { title: value }, value)))))
    );
  }

  private async _plot(metric: string, into: HTMLElement): Promise<void> {
    const figure = h('figure', { class: 'mlopshub-plot', 'data-testid': 'mlopshub-plot', 'data-metric': metric }, h('figcaption', {}, metric));
    into.append(figure);
    let history: IHistory;
    try {
      history = await requestAPI<IHistory>('experiments/history', {}, { workspace: this._workspace ?? undefined, metric, run: this._runIds });
    } catch (error) {
      figure.append(errorBox(messageOf(error)));
      return;
    }
    const { lines, min, max, steps } = plotLines(history, PLOT_WIDTH, PLOT_HEIGHT);
    const chart = svg('svg', { viewBox: `0 0 ${PLOT_WIDTH} ${PLOT_HEIGHT}`, width: String(PLOT_WIDTH), height: String(PLOT_HEIGHT), role: 'img', 'aria-label': `${metric} per step, each run a line` });
    chart.append(svg('rect', { x: '0', y: '0', width: String(PLOT_WIDTH), height: String(PLOT_HEIGHT), class: 'mlopshub-plot-frame' }));
    lines.forEach((line, index) => {
      const colour = COLOURS[index % COLOURS.length];
      if (line.path.includes('L')) {
        chart.append(svg('path', { d: line.path, fill: 'none', stroke: colour, 'stroke-width': '2', 'data-run': line.run_id }));
      }
      if (line.last) {
        chart.append(svg('circle', { cx: String(line.last.x), cy: String(line.last.y), r: '3', fill: colour, 'data-run': line.run_id }));
      }
    });
    figure.append(chart, h('div', { class: 'mlopshub-plot-scale' }, `${formatNumber(min)} – ${formatNumber(max)} · ${steps} step(s)`));
  }
}
