import { Widget } from '@lumino/widgets';

import { button, h } from './dom';
import { errorBox, labelled, messageOf } from './parts';
import { auditQuery, IAuditEntry, IAuditFilter } from './release';
import { requestAPI, requestText } from './request';

/**
 * The release pipeline's audit log in the main area, for model validators and
 * platform admins: filter by model, actor, action and time, and export what
 * the filter shows as CSV (the pipeline's own columns).
 */
export class AuditView extends Widget {
  private _filter: IAuditFilter = { model: '', actor: '', action: '', since: '', until: '' };
  private _inputs = new Map<keyof IAuditFilter, HTMLInputElement>();
  private _results: HTMLElement;
  private _status: HTMLElement;

  constructor() {
    super();
    this.addClass('mlopshub-page');
    this.addClass('mlopshub-audit-page');
    this.node.setAttribute('data-testid', 'mlopshub-audit-page');
    const field = (name: keyof IAuditFilter, label: string, type = 'text') => {
      const input = h('input', { class: 'jp-mod-styled', type, 'data-testid': `mlopshub-audit-${name}`, 'aria-label': label }) as HTMLInputElement;
      input.addEventListener('keydown', event => event.key === 'Enter' && void this.load());
      this._inputs.set(name, input);
      return labelled(label, input);
    };
    this._results = h('div', { class: 'mlopshub-audit-results' });
    this._status = h('p', { class: 'mlopshub-hint', role: 'status' });
    this.node.append(
      h('h2', {}, 'Audit log'),
      h(
        'form',
        { class: 'mlopshub-audit-filter' },
        field('model', 'Model'),
        field('actor', 'Actor'),
        field('action', 'Action'),
        field('since', 'From', 'datetime-local'),
        field('until', 'Until', 'datetime-local'),
        h(
          'div',
          { class: 'mlopshub-actions' },
          button('Apply', () => void this.load(), { class: 'jp-Button jp-mod-accept mlopshub-button', 'data-testid': 'mlopshub-audit-apply' }),
          button('Export CSV', () => void this._export(), { 'data-testid': 'mlopshub-audit-export' })
        )
      ),
      this._status,
      this._results
    );
    this.node.querySelector('form')?.addEventListener('submit', event => event.preventDefault());
    void this.load();
  }

  private _read(): Record<string, string> {
    for (const [name, input] of this._inputs) {
      this._filter[name] = input.value;
    }
    return auditQuery(this._filter);
  }

  /** Load the entries the filter lets through, newest first. */
  async load(): Promise<void> {
    let entries: IAuditEntry[];
    try {
      entries = (await requestAPI<{ entries: IAuditEntry[] }>('audit', {}, this._read())).entries;
    } catch (error) {
      this._results.replaceChildren(errorBox(`The audit log is unavailable: ${messageOf(error)}`));
      return;
    }
    this._status.textContent = `${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}`;
    this._results.replaceChildren(
      h(
        'table',
        { class: 'mlopshub-table', 'data-testid': 'mlopshub-audit-entries' },
        h('thead', {}, h('tr', {}, ...['When', 'Actor', 'Action', 'Model', 'Version', 'Release', 'Reason'].map(label => h('th', {}, label)))),
        h(
          'tbody',
          {},
          ...[...entries].reverse().map(entry =>
            h(
              'tr',
              { 'data-entry': String(entry.id), 'data-action': entry.action, 'data-model': entry.model ?? '' },
              h('td', { title: entry.at }, new Date(entry.at).toLocaleString()),
              h('td', {}, entry.actor),
              h('td', {}, entry.action),
              h('td', {}, entry.model ?? ''),
              h('td', {}, entry.version ?? ''),
              h('td', { class: 'mlopshub-hash' }, entry.release_id ?? ''),
              h('td', { class: 'mlopshub-audit-reason' }, entry.reason)
            )
          )
        )
      )
    );
  }

  private async _export(): Promise<void> {
    try {
      const text = await requestText('audit', { ...this._read(), format: 'csv' });
      const link = h('a', { href: URL.createObjectURL(new Blob([text], { type: 'text/csv' })), download: 'mlopshub-audit.csv' }) as HTMLAnchorElement;
      document.body.append(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
    } catch (error) {
      this._results.prepend(errorBox(`The export failed: ${messageOf(error)}`));
    }
  }
}
