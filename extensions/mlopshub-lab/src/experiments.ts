import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { Widget } from '@lumino/widgets';

import { button, h } from './dom';
import { formatDuration, formatNumber, IRun, keyMetrics, lineageOf, SortKey, sortRuns } from './model';
import { requestAPI } from './request';
import { IViews } from './views';

interface IExperiment {
  id: string;
  name: string;
  last_update_time: number | null;
}

/**
 * The Experiments section: runs of an experiment in one of the user's team
 * workspaces, sortable, with lineage, Compare (selected runs side by side
 * in a main-area tab) and a link to the run in the MLflow UI. A failure here shows a retry and leaves the rest
 * of the sidebar working.
 */
export class ExperimentsSection extends Widget {
  private _workspaces: string[] = [];
  private _workspace: string | null = null;
  private _experiments: IExperiment[] = [];
  private _experiment: string | null = null;
  private _runs: IRun[] = [];
  private _next: string | null = null;
  private _selected = new Set<string>();
  private _sort: SortKey = 'start_time';
  private _descending = true;
  private _body: HTMLElement;

  constructor(
    private readonly _views: IViews,
    private readonly _pageSize = 50
  ) {
    super();
    this.addClass('mlopshub-section');
    this.id = 'mlopshub-experiments';
    this._body = h('div', { class: 'mlopshub-section-body' });
    this.node.append(h('h3', {}, 'Experiments'), this._body);
  }

  /** Load the user's workspaces and the experiment that fits `projectName` (or the latest one). */
  async refresh(projectName = ''): Promise<void> {
    try {
      const reply = await requestAPI<{ workspaces: string[]; current: string | null }>('experiments/workspaces');
      this._workspaces = reply.workspaces;
      this._workspace = this._workspace ?? reply.current ?? reply.workspaces[0] ?? null;
      await this._loadExperiments(projectName);
    } catch (error) {
      this._renderError(error, () => void this.refresh(projectName));
    }
  }

  private async _loadExperiments(projectName = ''): Promise<void> {
    const reply = await requestAPI<{ experiments: IExperiment[] }>('experiments/list', {}, { workspace: this._workspace ?? undefined });
    this._experiments = reply.experiments;
    const stillThere = this._experiments.some(e => e.id === this._experiment);
    if (!stillThere) {
      const byName = this._experiments.find(e => projectName && e.name === projectName);
      const latest = [...this._experiments].sort((a, b) => (b.last_update_time ?? 0) - (a.last_update_time ?? 0))[0];
      this._experiment = (byName ?? latest)?.id ?? null;
    }
    await this._loadRuns(false);
  }

  private async _loadRuns(more: boolean): Promise<void> {
    if (!this._experiment) {
      this._runs = [];
      this._next = null;
      this._render();
      return;
    }
    try {
      const reply = await requestAPI<{ runs: IRun[]; next_page_token: string | null }>('experiments/runs', {}, {
        workspace: this._workspace ?? undefined,
        experiment: this._experiment,
        max_results: String(this._pageSize),
        page_token: more ? this._next ?? undefined : undefined,
        order_by: 'start_time DESC'
      });
      this._runs = more ? [...this._runs, ...reply.runs] : reply.runs;
      this._next = reply.next_page_token;
      if (!more) {
        // A reload (Refresh, or the sidebar shown again) keeps the runs the user ticked that are still there.
        const ids = new Set(reply.runs.map(run => run.run_id));
        this._selected = new Set([...this._selected].filter(id => ids.has(id)));
      }
      this._render();
    } catch (error) {
      this._renderError(error, () => void this._loadRuns(more));
    }
  }

  private _render(): void {
    const workspaceSelect = h('select', { class: 'jp-mod-styled', id: 'mlopshub-workspace', 'aria-label': 'Team workspace' }) as HTMLSelectElement;
    for (const name of this._workspaces) {
      workspaceSelect.append(h('option', { value: name, selected: name === this._workspace }, name));
    }
    workspaceSelect.addEventListener('change', () => {
      this._workspace = workspaceSelect.value;
      this._experiment = null;
      void this._loadExperiments().catch(error => this._renderError(error, () => void this.refresh()));
    });
    const experimentSelect = h('select', { class: 'jp-mod-styled', id: 'mlopshub-experiment', 'aria-label': 'Experiment' }) as HTMLSelectElement;
    for (const experiment of this._experiments) {
      experimentSelect.append(h('option', { value: experiment.id, selected: experiment.id === this._experiment }, experiment.name));
    }
    experimentSelect.addEventListener('change', () => {
      this._experiment = experimentSelect.value;
      void this._loadRuns(false);
    });
    const controls = h(
      'div',
      { class: 'mlopshub-actions' },
      this._workspaces.length > 1 ? workspaceSelect : h('span', { class: 'mlopshub-workspace' }, this._workspace ?? 'no team'),
      experimentSelect,
      button('Refresh', () => void this._loadRuns(false), { id: 'mlopshub-refresh-runs' }),
      button('Compare', () => this._views.openCompare(this._workspace, [...this._selected]), { id: 'mlopshub-compare-runs', disabled: this._selected.size < 2, title: 'Open the selected runs side by side in a tab' })
    );
    if (!this._experiments.length) {
      this._body.replaceChildren(controls, h('p', { class: 'mlopshub-empty' }, 'No experiments yet: runs you log with mlflow appear here.'));
      return;
    }
    this._body.replaceChildren(controls, this._table(), this._next ? button('Load more runs', () => void this._loadRuns(true), { id: 'mlopshub-more-runs' }) : '');
  }

  private _table(): HTMLElement {
    const metrics = keyMetrics(this._runs);
    const header = (label: string, key: SortKey) => {
      const arrow = this._sort === key ? (this._descending ? ' ▾' : ' ▴') : '';
      const cell = h('th', { class: 'mlopshub-sortable', 'data-sort': key }, label + arrow);
      cell.addEventListener('click', () => {
        this._descending = this._sort === key ? !this._descending : true;
        this._sort = key;
        this._render();
      });
      return cell;
    };
    const rows = sortRuns(this._runs, this._sort, this._descending).flatMap(run => this._runRows(run, metrics));
    return h(
      'table',
      { class: 'mlopshub-table', id: 'mlopshub-runs' },
      h(
        'thead',
        {},
        h(
          'tr',
          {},
          h('th', {}),
          header('Run', 'run_name'),
          header('Status', 'status'),
          header('Started', 'start_time'),
          header('Duration', 'duration_ms'),
          ...metrics.map(name => header(name, `metrics.${name}`))
        )
      ),
      h('tbody', {}, ...rows)
    );
  }

  private _runRows(run: IRun, metrics: string[]): HTMLElement[] {
    const check = h('input', { type: 'checkbox', 'aria-label': `Select ${run.run_name ?? run.run_id}`, checked: this._selected.has(run.run_id) }) as HTMLInputElement;
    check.addEventListener('change', () => {
      if (check.checked) {
        this._selected.add(run.run_id);
      } else {
        this._selected.delete(run.run_id);
      }
      (this.node.querySelector('#mlopshub-compare-runs') as HTMLButtonElement).disabled = this._selected.size < 2;
    });
    const open = h('a', { href: '#', class: 'mlopshub-open', title: 'Open in the MLflow UI' }, run.run_name ?? run.run_id.slice(0, 8));
    open.addEventListener('click', event => {
      event.preventDefault();
      const url = URLExt.join(ServerConnection.makeSettings().baseUrl, 'mlopshub-lab', 'mlflow-ui');
      const query = new URLSearchParams({ experiment: this._experiment ?? '', run: run.run_id, workspace: this._workspace ?? '' });
      window.open(`${url}?${query}`, '_blank', 'noopener');
    });
    const lineage = lineageOf(run.lineage);
    const params = Object.entries(run.params);
    const details = h(
      'tr',
      { class: 'mlopshub-run-details', 'data-run': run.run_id },
      h(
        'td',
        { colspan: String(5 + metrics.length) },
        h('span', { class: 'mlopshub-lineage' }, ...lineage.map(([key, value]) => h('span', { class: 'mlopshub-tag', title: key }, `${key}: ${value}`))),
        params.length ? h('span', { class: 'mlopshub-params' }, params.map(([key, value]) => `${key}=${value}`).join(' · ')) : ''
      )
    );
    return [
      h(
        'tr',
        { class: 'mlopshub-run', 'data-run': run.run_id },
        h('td', {}, check),
        h('td', {}, open),
        h('td', { class: `mlopshub-run-status mlopshub-run-${run.status.toLowerCase()}` }, run.status),
        h('td', {}, run.start_time ? new Date(run.start_time).toLocaleString() : '–'),
        h('td', {}, formatDuration(run.duration_ms)),
        ...metrics.map(name => h('td', { class: 'mlopshub-metric' }, name in run.metrics ? formatNumber(run.metrics[name]) : '–'))
      ),
      details
    ];
  }

  private _renderError(error: unknown, retry: () => void): void {
    this._body.replaceChildren(
      h('p', { class: 'mlopshub-error', id: 'mlopshub-experiments-error' }, `Experiments are unavailable: ${(error as Error).message}`),
      button('Retry', retry, { id: 'mlopshub-retry-experiments' })
    );
  }
}
