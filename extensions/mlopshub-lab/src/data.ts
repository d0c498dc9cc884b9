import { Dialog, InputDialog, showDialog } from '@jupyterlab/apputils';
import { Widget } from '@lumino/widgets';

import { button, h } from './dom';
import { formatBytes, IDataset, IProject, IVersion, OperationGuard, statusLabels } from './model';
import { post, requestAPI } from './request';

interface IProjectReply {
  path: string;
  project: IProject | null;
  message?: string;
}

interface IDatasetsReply {
  datasets: IDataset[];
  total: number;
  offset: number;
  limit: number;
}

const PAGE = 100;

/**
 * The Data section: the DVC project of the folder open in the file browser,
 * its datasets with status, their history, and the actions on them.
 */
export class DataSection extends Widget {
  private _path = '';
  private _project: IProject | null = null;
  private _datasets: IDataset[] = [];
  private _total = 0;
  private _guard = new OperationGuard();
  private _status: HTMLElement;
  private _body: HTMLElement;
  /** Called with how many datasets the team remote lacks, for the section's badge. */
  onCount: (notPushed: number) => void = () => undefined;

  constructor() {
    super();
    this.addClass('mlopshub-section');
    this.id = 'mlopshub-data';
    this._status = h('div', { class: 'mlopshub-status', role: 'status' });
    this._body = h('div', { class: 'mlopshub-section-body' });
    this.node.append(h('h3', {}, 'Data'), this._status, this._body);
  }

  /** Show the project of `path` (a folder relative to the server root). */
  async showFolder(path: string): Promise<void> {
    this._path = path;
    this._say('');
    try {
      const reply = await requestAPI<IProjectReply>('data/project', {}, { path });
      if (path !== this._path) {
        return; // the user moved on while this loaded
      }
      this._project = reply.project;
      if (!reply.project || !reply.project.dvc) {
        this.onCount(0);
        this._renderEmpty();
        return;
      }
      await this._loadDatasets(0);
    } catch (error) {
      this._renderError(error);
    }
  }

  /** Track a file or folder (from the file browser's context menu). */
  async track(path: string): Promise<void> {
    await this._operation(`Tracking ${path}`, async () => {
      await post('data/track', { path });
      return `Tracking ${path}. Save a version to record it.`;
    });
  }

  private async _loadDatasets(offset: number): Promise<void> {
    const reply = await requestAPI<IDatasetsReply>('data/datasets', {}, {
      path: this._path,
      offset: String(offset),
      limit: String(PAGE)
    });
    this._datasets = offset ? [...this._datasets, ...reply.datasets] : reply.datasets;
    this._total = reply.total;
    this.onCount(this._datasets.filter(dataset => dataset.status.includes('not_pushed')).length);
    this._renderProject();
  }

  private _renderEmpty(): void {
    this._body.replaceChildren(
      h('p', { class: 'mlopshub-empty' }, `“${this._path || 'your home'}” is not under data versioning.`),
      button('Enable data versioning', () => void this._enable(), { id: 'mlopshub-enable' })
    );
  }

  private _renderProject(): void {
    const project = this._project!;
    const busy = Boolean(this._guard.running);
    const rows = this._datasets.map(dataset => this._datasetRow(dataset, busy));
    const more =
      this._datasets.length < this._total
        ? button(`Show more (${this._total - this._datasets.length} left)`, () => void this._loadDatasets(this._datasets.length))
        : null;
    this._body.replaceChildren(
      h(
        'p',
        { class: 'mlopshub-project' },
        `Project: ${project.root || '(home)'} · remote: ${project.remote ? project.remote.url : 'none'}`
      ),
      h(
        'div',
        { class: 'mlopshub-actions' },
        button('Save version', () => void this._version(), { id: 'mlopshub-save-version', disabled: busy }),
        button('Push', () => void this._sync('push'), { id: 'mlopshub-push', disabled: busy }),
        button('Pull', () => void this._sync('pull'), { id: 'mlopshub-pull', disabled: busy }),
        button('Refresh', () => void this.showFolder(this._path), { id: 'mlopshub-refresh-data', disabled: busy })
      ),
      this._datasets.length
        ? h(
            'table',
            { class: 'mlopshub-table', id: 'mlopshub-datasets' },
            h('thead', {}, h('tr', {}, h('th', {}, 'Dataset'), h('th', {}, 'Size'), h('th', {}, 'Version'), h('th', {}, 'Status'), h('th', {}))),
            h('tbody', {}, ...rows)
          )
        : h('p', { class: 'mlopshub-empty' }, 'No tracked data yet: right-click a file in the file browser and choose “Track with DVC”.'),
      more ?? ''
    );
  }

  private _datasetRow(dataset: IDataset, busy: boolean): HTMLElement {
    return h(
      'tr',
      { 'data-path': dataset.path },
      h('td', { class: 'mlopshub-path', title: dataset.path }, dataset.path),
      h('td', {}, formatBytes(dataset.size)),
      h('td', { class: 'mlopshub-hash', title: dataset.hash ?? '' }, dataset.short_hash ?? '–'),
      h('td', {}, ...statusLabels(dataset.status).map(label => h('span', { class: `mlopshub-chip mlopshub-chip-${label.replace(/ /g, '-')}` }, label))),
      h('td', {}, button('History', () => void this._history(dataset), { class: 'jp-Button mlopshub-button mlopshub-history', disabled: busy }))
    );
  }

  private async _enable(): Promise<void> {
    await this._operation('Enabling data versioning', async () => {
      const reply = await post<IProjectReply>('data/enable', { path: this._path });
      return reply.message ?? 'Data versioning enabled.';
    });
  }

  private async _version(): Promise<void> {
    const result = await InputDialog.getText({ title: 'Save a new version', label: 'What changed?', placeholder: 'e.g. loans up to 2026-10' });
    if (!result.button.accept) {
      return;
    }
    const message = (result.value ?? '').trim();
    if (!message) {
      this._say('A version needs a message saying what changed.', true);
      return;
    }
    await this._operation('Saving a version', async () => {
      const reply = await post<{ commit: string; datasets: string[] }>('data/version', { path: this._path, message });
      return `Saved version ${reply.commit.slice(0, 8)} (${reply.datasets.length} dataset(s)).`;
    });
  }

  private async _sync(direction: 'push' | 'pull'): Promise<void> {
    await this._operation(direction === 'push' ? 'Pushing' : 'Pulling', async () => {
      const reply = await post<{ output: string }>(`data/${direction}`, { path: this._path });
      return reply.output.trim() || `${direction === 'push' ? 'Pushed' : 'Pulled'}.`;
    });
  }

  private async _history(dataset: IDataset): Promise<void> {
    let versions: IVersion[];
    try {
      versions = (await requestAPI<{ versions: IVersion[] }>('data/history', {}, { path: dataset.path })).versions;
    } catch (error) {
      this._renderError(error);
      return;
    }
    const list = h(
      'ol',
      { class: 'mlopshub-history-list' },
      ...versions.map(version =>
        h(
          'li',
          { 'data-commit': version.commit },
          h('code', {}, version.short),
          ` ${version.message} — ${version.author}, ${new Date(version.date).toLocaleString()} `,
          button(
            'Restore',
            () => {
              dialog.reject();
              void this._restore(dataset.path, version);
            },
            { class: 'jp-Button mlopshub-button mlopshub-restore' }
          )
        )
      )
    );
    const body = new Widget({ node: h('div', { class: 'mlopshub-history' }, list) });
    const dialog = new Dialog({ title: `Versions of ${dataset.path}`, body, buttons: [Dialog.cancelButton({ label: 'Close' })] });
    await dialog.launch();
  }

  private async _restore(path: string, version: IVersion): Promise<void> {
    const answer = await showDialog({
      title: 'Restore this version?',
      body: `${path} goes back to ${version.short} (“${version.message}”). Changes not saved as a version are replaced here and kept in DVC's cache.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Restore' })]
    });
    if (!answer.button.accept) {
      return;
    }
    await this._operation(`Restoring ${path}`, async () => {
      const reply = await post<{ dataset: IDataset & { discarded_changes_hash?: string } }>('data/restore', {
        path,
        commit: version.commit,
        discard_changes: true
      });
      const kept = reply.dataset.discarded_changes_hash;
      return `${path} is back at ${version.short}.` + (kept ? ` Your unsaved changes are kept in DVC's cache as ${kept.slice(0, 8)}.` : '');
    });
  }

  /** Run a long operation once at a time, with progress shown and DVC's error text on failure. */
  private async _operation(label: string, operation: () => Promise<string>): Promise<void> {
    if (this._guard.running) {
      this._say(`${this._guard.running} is still running; wait for it to finish.`, true);
      return;
    }
    let done: string | null = null;
    try {
      done = await this._guard.run(label, async () => {
        this._say(`${label}…`);
        this.node.classList.add('mlopshub-busy');
        if (this._project) {
          this._renderProject();
        }
        return operation();
      });
    } catch (error) {
      this._say(`${label} failed: ${(error as Error).message}`, true);
    } finally {
      this.node.classList.remove('mlopshub-busy');
    }
    const failed = done === null ? this._status.textContent : null;
    await this.showFolder(this._path);
    this._say(done ?? failed ?? '', done === null);
  }

  private _renderError(error: unknown): void {
    this._body.replaceChildren(
      h('p', { class: 'mlopshub-error' }, (error as Error).message),
      button('Retry', () => void this.showFolder(this._path))
    );
  }

  private _say(text: string, isError = false): void {
    this._status.textContent = text;
    this._status.classList.toggle('mlopshub-error', isError);
  }
}
