import { Dialog, showDialog } from '@jupyterlab/apputils';
import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { button, h } from './dom';
import { formatNumber } from './model';
import { endpointBlock, errorBox, facts, gateList, messageOf, pace, pollFor, releaseChanged } from './parts';
import { post, requestAPI } from './request';
import {
  decisionProblem,
  exampleBody,
  IAuditEntry,
  IRelease,
  pageDelay,
  releaseLineage,
  signatureColumns,
  stateLabel,
  stepLines,
  thresholdRows
} from './release';

interface ITryAnswer {
  url: string;
  status: number;
  body: unknown;
}

function when(time: string | null | undefined): string {
  return time ? new Date(time).toLocaleString() : '';
}

function section(title: string, testid: string, ...children: (Node | null)[]): HTMLElement {
  return h('section', { class: 'mlopshub-page-section', 'data-testid': testid }, h('h3', {}, title), ...children);
}

/**
 * A release in the main area. As a **release** page: its timeline, gates with
 * reasons and fixes, endpoints with the example request built from the
 * model's signature, the approval and its audit trail. As a **review** page
 * (model validators): the evidence for a decision first (hold-out metrics
 * against the team's thresholds, lineage, the staging endpoint tried from
 * here), then Approve or Reject, each with a comment and a confirmation. The
 * pipeline decides: its refusal (say, the validator published it) is shown
 * as it says it. The page follows the release until it has ended (a release in
 * production is looked at now and then: a roll back changes it).
 */
export class ReleasePage extends Widget {
  private _release: IRelease | null = null;
  private _audit: IAuditEntry[] | string = [];
  private _tried: ITryAnswer | string | null = null;
  private _poll: Poll;
  private _content: HTMLElement;
  private _decision: HTMLElement | null = null;

  constructor(
    private readonly _id: string,
    private readonly _mode: 'release' | 'review'
  ) {
    super();
    this.addClass('mlopshub-page');
    this.addClass(`mlopshub-${_mode}-page`);
    this.node.setAttribute('data-testid', `mlopshub-${_mode}-page`);
    this.node.setAttribute('data-release', _id);
    this._content = h('div', {}, h('p', { class: 'mlopshub-empty' }, 'Loading the release…'));
    this.node.append(this._content);
    this._poll = pollFor(this.node, 1500, () => this._look());
    void this._look().catch(() => undefined);
  }

  dispose(): void {
    this._poll.dispose();
    super.dispose();
  }

  private async _look(): Promise<void> {
    try {
      this._release = await requestAPI<IRelease>(`releases/${encodeURIComponent(this._id)}`);
    } catch (error) {
      this._content.replaceChildren(errorBox(`The release ${this._id} is unavailable: ${messageOf(error)}`));
      throw error;
    }
    // Only this release's entries: whoever may read the release (its team, validators, admins) may read them.
    this._audit = await requestAPI<{ entries: IAuditEntry[] }>('audit', {}, { release_id: this._id })
      .then(reply => reply.entries)
      .catch(error => `The audit trail is unavailable: ${messageOf(error)}`);
    this._render();
    const delay = pageDelay(this._release.state);
    if (delay === null) {
      this._poll.dispose(); // the release has ended: nothing on the page changes any more
    } else {
      this._poll.frequency = pace(delay);
    }
  }

  private _render(): void {
    const release = this._release!;
    this.title.label = `${this._mode === 'review' ? 'Review' : 'Release'} ${release.model_name} v${release.version}`;
    this.node.setAttribute('data-state', release.state);
    const header = h(
      'header',
      { class: 'mlopshub-page-header' },
      h('h2', {}, `${release.model_name} v${release.version} `, h('span', { class: `mlopshub-release-state mlopshub-state-${release.state}`, 'data-testid': 'mlopshub-release-state', 'data-state': release.state }, stateLabel(release.state))),
      release.description ? h('p', { class: 'mlopshub-release-description' }, release.description) : null,
      facts([
        ['team', release.team],
        ['kind', release.kind],
        ['publisher', release.publisher],
        ['published', when(release.created)],
        ['run', release.run_id ?? '–']
      ])
    );
    const parts =
      this._mode === 'review'
        ? [this._evidence(release), this._lineage(release), this._endpoint(release), this._decide(release), this._timeline(release), this._trail()]
        : [this._timeline(release), section('Gates', 'mlopshub-page-gates', release.gate_results.length ? gateList(release) : h('p', { class: 'mlopshub-empty' }, 'The gates have not run yet.')), this._endpoint(release), this._approval(release), this._trail()];
    // The decision form keeps what the validator typed while the page follows the release.
    this._content.replaceChildren(header, h('div', { class: 'mlopshub-page-grid' }, ...parts.filter((part): part is HTMLElement => part !== null)));
  }

  private _timeline(release: IRelease): HTMLElement {
    const steps = stepLines(release).map((step, index) => {
      const raw = release.steps[index];
      const times = [raw.started ? `started ${when(raw.started)}` : '', raw.finished ? `finished ${when(raw.finished)}` : ''].filter(Boolean).join(', ');
      return h(
        'li',
        { class: `mlopshub-step mlopshub-step-${step.status}`, 'data-step': step.name, 'data-status': step.status },
        h('span', { class: 'mlopshub-step-mark' }, step.mark),
        h('strong', {}, ` ${step.label}`),
        times ? h('span', { class: 'mlopshub-step-time' }, ` · ${times}`) : null,
        step.detail ? h('div', { class: 'mlopshub-step-detail' }, step.detail) : null
      );
    });
    return section(
      'Timeline',
      'mlopshub-timeline',
      h('ol', { class: 'mlopshub-timeline' }, ...steps),
      release.reason ? h('p', { class: 'mlopshub-release-reason' }, release.reason) : null
    );
  }

  private _evidence(release: IRelease): HTMLElement {
    const rows = thresholdRows(release);
    const table = rows.length
      ? h(
          'table',
          { class: 'mlopshub-table' },
          h('thead', {}, h('tr', {}, h('th', {}, 'Metric (hold-out)'), h('th', {}, 'Value'), h('th', {}, 'Team threshold'), h('th', {}, ''))),
          h(
            'tbody',
            {},
            ...rows.map(row =>
              h(
                'tr',
                { 'data-metric': row.metric, 'data-met': row.met === null ? 'none' : String(row.met) },
                h('td', {}, row.metric),
                h('td', { class: 'mlopshub-metric' }, row.value === null ? '–' : formatNumber(row.value)),
                h('td', {}, row.bound || 'none'),
                h('td', { class: row.met === false ? 'mlopshub-gate-failed' : 'mlopshub-gate-passed' }, row.met === null ? '' : row.met ? '✓ met' : '✗ not met')
              )
            )
          )
        )
      : h('p', { class: 'mlopshub-empty' }, 'The metrics gate has not measured this release.');
    return section('Hold-out metrics', 'mlopshub-evidence', table, gateList(release));
  }

  private _lineage(release: IRelease): HTMLElement {
    const details = release.gate_results.find(g => g.name === 'lineage')?.details ?? {};
    const lines = releaseLineage(release);
    return section(
      'Lineage',
      'mlopshub-page-lineage',
      lines.length
        ? facts([...lines.map(([key, value]) => [key, key === 'commit' ? String(details.commit) : value] as [string, string]), ['run', release.run_id ?? '–'], ['model', release.model_uri]])
        : h('p', { class: 'mlopshub-empty' }, 'The lineage gate has not run yet.')
    );
  }

  private _endpoint(release: IRelease): HTMLElement | null {
    const stage = release.state === 'production' && release.endpoints.production ? 'production' : 'staging';
    const url = release.endpoints[stage];
    if (!url) {
      return null;
    }
    const columns = signatureColumns(release);
    const tried = this._tried;
    const answer =
      tried === null
        ? null
        : typeof tried === 'string'
          ? errorBox(tried)
          : h('pre', { class: 'mlopshub-try-answer', 'data-testid': 'mlopshub-try-answer', 'data-status': String(tried.status) }, `HTTP ${tried.status}\n${JSON.stringify(tried.body, null, 1)}`);
    return section(
      `The ${stage} endpoint`,
      'mlopshub-page-endpoint',
      endpointBlock(stage, url, columns),
      release.kind === 'online' && columns
        ? button('Try it', () => void this._try(stage, columns), { class: 'jp-Button jp-mod-accept mlopshub-button', 'data-testid': 'mlopshub-try' })
        : h('p', { class: 'mlopshub-hint' }, 'The model has no column signature: call the endpoint with your own rows.'),
      answer
    );
  }

  private async _try(stage: string, columns: string[]): Promise<void> {
    try {
      this._tried = await post<ITryAnswer>(`releases/${encodeURIComponent(this._id)}/try`, { stage, request: exampleBody(columns) });
    } catch (error) {
      this._tried = messageOf(error);
    }
    this._render();
  }

  private _approval(release: IRelease): HTMLElement {
    const decided = release.approver ? facts([['by', release.approver], ['comment', release.comment || '–']]) : null;
    return section(
      'Approval',
      'mlopshub-page-approval',
      decided ?? h('p', { class: 'mlopshub-empty' }, release.state === 'awaiting_approval' ? 'Awaiting a model validator who did not publish it (from their review page).' : 'Not decided.')
    );
  }

  private _decide(release: IRelease): HTMLElement | null {
    if (release.state !== 'awaiting_approval') {
      this._decision = null;
      return section('Decision', 'mlopshub-decision', release.approver ? facts([['by', release.approver], ['comment', release.comment || release.reason || '–']]) : h('p', {}, `This release is ${stateLabel(release.state)}.`));
    }
    if (this._decision) {
      return this._decision;
    }
    const comment = h('textarea', { class: 'jp-mod-styled mlopshub-comment', 'data-testid': 'mlopshub-decision-comment', rows: '3', maxlength: '2000', placeholder: 'What you checked, or why you reject it (required)' }) as HTMLTextAreaElement;
    const status = h('div', { class: 'mlopshub-approval-status', 'data-testid': 'mlopshub-decision-status' });
    const decide = async (action: 'approve' | 'reject') => {
      const problem = decisionProblem(action, comment.value);
      if (problem) {
        status.replaceChildren(errorBox(problem));
        return;
      }
      const verb = action === 'approve' ? 'Approve' : 'Reject';
      const answer = await showDialog({
        title: `${verb} ${release.model_name} v${release.version}?`,
        body: action === 'approve' ? `It goes to production for team ${release.team}. Your comment: “${comment.value.trim()}”` : `The publisher ${release.publisher} reads your reason: “${comment.value.trim()}”`,
        buttons: [Dialog.cancelButton(), action === 'approve' ? Dialog.okButton({ label: verb }) : Dialog.warnButton({ label: verb })]
      });
      if (!answer.button.accept) {
        return;
      }
      try {
        const decided = await post<IRelease>(`releases/${encodeURIComponent(this._id)}/${action}`, action === 'approve' ? { comment: comment.value.trim() } : { reason: comment.value.trim() });
        status.replaceChildren(h('p', { class: 'mlopshub-done' }, `${action === 'approve' ? 'Approved' : 'Rejected'}: ${stateLabel(decided.state)}.`));
        releaseChanged.emit(decided);
        void this._poll.refresh();
      } catch (error) {
        status.replaceChildren(errorBox(messageOf(error)));
      }
    };
    this._decision = section(
      'Decision',
      'mlopshub-decision',
      comment,
      h(
        'div',
        { class: 'mlopshub-actions' },
        button('Approve', () => void decide('approve'), { class: 'jp-Button jp-mod-accept mlopshub-button mlopshub-approve', 'data-testid': 'mlopshub-approve' }),
        button('Reject', () => void decide('reject'), { class: 'jp-Button jp-mod-warn mlopshub-button mlopshub-reject', 'data-testid': 'mlopshub-reject' })
      ),
      status
    );
    return this._decision;
  }

  private _trail(): HTMLElement {
    if (typeof this._audit === 'string') {
      return section('Audit trail', 'mlopshub-page-audit', errorBox(this._audit));
    }
    return section(
      'Audit trail',
      'mlopshub-page-audit',
      h(
        'ol',
        { class: 'mlopshub-trail' },
        ...this._audit.map(entry =>
          h('li', { 'data-action': entry.action }, h('span', { class: 'mlopshub-step-time' }, `${when(entry.at)} `), h('strong', {}, entry.action), ` by ${entry.actor}`, entry.reason ? ` — ${entry.reason}` : '')
        )
      )
    );
  }
}
