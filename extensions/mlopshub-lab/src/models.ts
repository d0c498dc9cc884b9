import { Widget } from '@lumino/widgets';

import { button, h } from './dom';
import { formatNumber } from './model';
import { requestAPI, post } from './request';
import {
  exampleRequest,
  ILoggedModel,
  IRelease,
  pollDelay,
  modelNameProblem,
  releaseLineage,
  releaseMetrics,
  signatureColumns,
  stateLabel,
  stepLines,
  suggestedName
} from './release';

/** How often the release view asks the pipeline for news while a release moves by itself. */
const POLL_MS = 1500;

function errorBox(message: string): HTMLElement {
  return h('p', { class: 'mlopshub-error', 'data-testid': 'mlopshub-error', role: 'alert' }, message);
}

function messageOf(error: unknown): string {
  return (error as Error).message || String(error);
}

/** A label with its input, for the small forms of this section. */
function labelled(text: string, input: HTMLElement): HTMLElement {
  return h('label', { class: 'mlopshub-field' }, h('span', {}, text), input);
}

/** The gate results of a release: passed or failed, the reason, and for a failure the fix. */
function gateList(release: IRelease): HTMLElement {
  return h(
    'ul',
    { class: 'mlopshub-gates' },
    ...release.gate_results.map(gate =>
      h(
        'li',
        {
          class: `mlopshub-gate ${gate.passed ? 'mlopshub-gate-passed' : 'mlopshub-gate-failed'}`,
          'data-testid': 'mlopshub-gate',
          'data-gate': gate.name,
          'data-passed': String(gate.passed)
        },
        h('span', { class: 'mlopshub-gate-name' }, `${gate.passed ? '✓' : '✗'} ${gate.name}`),
        h('span', { class: 'mlopshub-gate-reason' }, `: ${gate.reason}`),
        !gate.passed && gate.fix ? h('div', { class: 'mlopshub-gate-fix' }, `Fix: ${gate.fix}`) : null
      )
    )
  );
}

/** An endpoint address with a ready-to-copy example request. */
function endpointBlock(stage: string, url: string, columns: string[] | null): HTMLElement {
  const example = exampleRequest(url, columns);
  const copy = button('Copy', () => void navigator.clipboard?.writeText(example), { 'data-testid': 'mlopshub-copy-example' });
  return h(
    'div',
    { class: 'mlopshub-endpoint', 'data-stage': stage },
    h('div', {}, `${stage} endpoint: `, h('code', { class: 'mlopshub-endpoint-url' }, url)),
    h('pre', { class: 'mlopshub-example-request', 'data-testid': 'mlopshub-example-request', 'data-stage': stage }, example),
    copy
  );
}

/**
 * One release followed live: its steps, gates, endpoints with an example
 * request, and why it stopped. Polls the release while it moves by itself;
 * stops when it waits for a person or has ended, or when disposed.
 */
export class ReleaseView {
  readonly node: HTMLElement;
  private _timer: number | null = null;
  private _disposed = false;

  constructor(
    private _release: IRelease,
    private readonly _columnsHint: string[] | null = null
  ) {
    this.node = h('div', { class: 'mlopshub-release', 'data-testid': 'mlopshub-release', 'data-release': _release.id });
    this._render(null);
    this._schedule();
  }

  get release(): IRelease {
    return this._release;
  }

  dispose(): void {
    this._disposed = true;
    if (this._timer !== null) {
      window.clearTimeout(this._timer);
      this._timer = null;
    }
  }

  private _schedule(): void {
    const delay = pollDelay(this._release.state);
    if (this._disposed || delay === null) {
      return;
    }
    this._timer = window.setTimeout(() => void this._poll(), delay);
  }

  private async _poll(): Promise<void> {
    this._timer = null;
    try {
      this._release = await requestAPI<IRelease>(`releases/${encodeURIComponent(this._release.id)}`);
      this._render(null);
    } catch (error) {
      this._render(messageOf(error));
    }
    this._schedule();
  }

  private _render(error: string | null): void {
    const release = this._release;
    const columns = signatureColumns(release) ?? this._columnsHint;
    const steps = stepLines(release).map(step =>
      h(
        'li',
        { class: `mlopshub-step mlopshub-step-${step.status}`, 'data-step': step.name, 'data-status': step.status },
        `${step.mark} ${step.label}`,
        step.detail ? h('span', { class: 'mlopshub-step-detail' }, ` — ${step.detail}`) : null
      )
    );
    this.node.setAttribute('data-state', release.state);
    const children: (HTMLElement | null)[] = [
      h(
        'div',
        { class: 'mlopshub-release-title' },
        h('strong', {}, `${release.model_name} v${release.version}`),
        ' ',
        h('span', { class: `mlopshub-release-state mlopshub-state-${release.state}`, 'data-testid': 'mlopshub-release-state', 'data-state': release.state }, stateLabel(release.state))
      ),
      h('ol', { class: 'mlopshub-steps' }, ...steps),
      release.gate_results.length ? gateList(release) : null,
      release.reason ? h('p', { class: 'mlopshub-release-reason' }, release.reason) : null,
      release.endpoints.staging && ['staging', 'awaiting_approval', 'approved'].includes(release.state)
        ? endpointBlock('staging', release.endpoints.staging, columns)
        : null,
      release.endpoints.production && release.state === 'production' ? endpointBlock('production', release.endpoints.production, columns) : null,
      release.state === 'awaiting_approval' ? h('p', { class: 'mlopshub-hint' }, 'A model validator who did not publish it approves it from the Approvals view.') : null,
      error ? errorBox(error) : null
    ];
    this.node.replaceChildren(...children.filter((child): child is HTMLElement => child !== null));
  }
}

/**
 * The Models section: the team's logged models with Publish, the release
 * being followed, and the team's releases with Roll back for the one in
 * production. A failure here shows a retry and leaves the rest of the
 * sidebar working.
 */
export class ModelsSection extends Widget {
  private _workspaces: string[] = [];
  private _workspace: string | null = null;
  private _models: ILoggedModel[] = [];
  private _next: string | null = null;
  private _releases: IRelease[] = [];
  private _view: ReleaseView | null = null;
  /** Each model's publish form slot, kept across re-renders so a reload never drops what the user typed. */
  private _slots = new Map<string, HTMLElement>();
  private _body: HTMLElement;
  private _releaseBox: HTMLElement;
  private _releasesBox: HTMLElement;

  constructor(private readonly _pageSize = 25) {
    super();
    this.addClass('mlopshub-section');
    this.addClass('mlopshub-models');
    this.id = 'mlopshub-models';
    this.node.setAttribute('data-testid', 'mlopshub-models');
    this._body = h('div', { class: 'mlopshub-section-body' });
    this._releaseBox = h('div', { class: 'mlopshub-release-box', id: 'mlopshub-release-box' });
    this._releasesBox = h('div', { class: 'mlopshub-releases', id: 'mlopshub-releases', 'data-testid': 'mlopshub-releases' });
    this.node.append(h('h3', {}, 'Models'), this._body, this._releaseBox, h('h4', {}, 'Releases of the team'), this._releasesBox);
  }

  dispose(): void {
    this._view?.dispose();
    super.dispose();
  }

  /** Load the user's workspaces, the team's logged models and its releases. */
  async refresh(): Promise<void> {
    try {
      const reply = await requestAPI<{ workspaces: string[]; current: string | null }>('experiments/workspaces');
      this._workspaces = reply.workspaces;
      this._workspace = this._workspace ?? reply.current ?? reply.workspaces[0] ?? null;
      await Promise.all([this._loadModels(false), this._loadReleases()]);
    } catch (error) {
      this._renderError(error, () => void this.refresh());
    }
  }

  private async _loadModels(more: boolean): Promise<void> {
    try {
      const reply = await requestAPI<{ models: ILoggedModel[]; next_page_token: string | null }>('models/logged', {}, {
        workspace: this._workspace ?? undefined,
        max_results: String(this._pageSize),
        page_token: more ? this._next ?? undefined : undefined
      });
      this._models = more ? [...this._models, ...reply.models] : reply.models;
      this._next = reply.next_page_token;
      this._render();
    } catch (error) {
      this._renderError(error, () => void this._loadModels(more));
    }
  }

  private async _loadReleases(): Promise<void> {
    try {
      const reply = await requestAPI<{ releases: IRelease[] }>('releases');
      this._releases = reply.releases.filter(release => !this._workspace || release.team === this._workspace);
      this._renderReleases(null);
    } catch (error) {
      this._renderReleases(`Releases are unavailable: ${messageOf(error)}`);
    }
  }

  private _render(): void {
    const select = h('select', { class: 'jp-mod-styled', id: 'mlopshub-models-workspace', 'aria-label': 'Team workspace' }) as HTMLSelectElement;
    for (const name of this._workspaces) {
      select.append(h('option', { value: name, selected: name === this._workspace }, name));
    }
    select.addEventListener('change', () => {
      this._workspace = select.value;
      void Promise.all([this._loadModels(false), this._loadReleases()]);
    });
    const controls = h(
      'div',
      { class: 'mlopshub-actions' },
      this._workspaces.length > 1 ? select : h('span', { class: 'mlopshub-workspace' }, this._workspace ?? 'no team'),
      button('Refresh', () => void Promise.all([this._loadModels(false), this._loadReleases()]), { id: 'mlopshub-refresh-models' })
    );
    if (!this._models.length) {
      this._body.replaceChildren(controls, h('p', { class: 'mlopshub-empty' }, 'No logged models yet: models you log with mlflow.<flavor>.log_model(..., name=...) appear here.'));
      return;
    }
    this._body.replaceChildren(
      controls,
      h('ul', { class: 'mlopshub-model-list' }, ...this._models.map(model => this._modelRow(model))),
      this._next ? button('Load more models', () => void this._loadModels(true), { id: 'mlopshub-more-models' }) : ''
    );
  }

  private _modelRow(model: ILoggedModel): HTMLElement {
    const metrics = Object.entries(model.metrics)
      .slice(0, 3)
      .map(([name, value]) => `${name} ${value === null ? '–' : formatNumber(value)}`)
      .join(' · ');
    const signature = model.has_signature === null ? '' : model.has_signature ? 'signature ✓' : 'no signature';
    const form = this._slots.get(model.model_id) ?? h('div', { class: 'mlopshub-publish-form-slot' });
    this._slots.set(model.model_id, form);
    const row = h(
      'li',
      { class: 'mlopshub-model-row', 'data-testid': 'mlopshub-model-row', 'data-run': model.run_id ?? '', 'data-model': model.name },
      h(
        'div',
        { class: 'mlopshub-model-head' },
        h('strong', {}, model.name),
        ' ',
        h('span', { class: 'mlopshub-model-run', title: model.run_id ?? '' }, `${model.experiment ?? ''} / ${model.run_name ?? model.run_id?.slice(0, 8) ?? 'no run'}`),
        ' ',
        button('Publish', () => this._openPublish(model, form), {
          class: 'jp-Button mlopshub-button mlopshub-publish',
          'data-testid': 'mlopshub-publish',
          disabled: !model.model_uri,
          title: model.model_uri ? `Publish ${model.model_uri}` : 'Logged outside a run: publish it from a run'
        })
      ),
      h(
        'div',
        { class: 'mlopshub-model-meta' },
        model.created ? new Date(model.created).toLocaleString() : '',
        metrics ? ` · ${metrics}` : '',
        signature ? ` · ${signature}` : ''
      ),
      form
    );
    return row;
  }

  private _openPublish(model: ILoggedModel, slot: HTMLElement): void {
    if (slot.childElementCount) {
      slot.replaceChildren();
      return;
    }
    const name = h('input', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-publish-name', value: suggestedName(model), maxlength: '63' }) as HTMLInputElement;
    const kind = h(
      'select',
      { class: 'jp-mod-styled', 'data-testid': 'mlopshub-publish-kind' },
      h('option', { value: 'online', selected: true }, 'online (REST endpoint)'),
      h('option', { value: 'batch' }, 'batch (scheduled job)')
    ) as HTMLSelectElement;
    const description = h('textarea', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-publish-description', rows: '2', maxlength: '2000' }) as HTMLTextAreaElement;
    const problem = h('p', { class: 'mlopshub-field-problem', 'data-testid': 'mlopshub-publish-problem' });
    const status = h('div', { class: 'mlopshub-publish-status' });
    const submit = button('Publish', () => void send(), { class: 'jp-Button jp-mod-accept mlopshub-button', 'data-testid': 'mlopshub-publish-submit' });
    const check = () => {
      const text = modelNameProblem(name.value.trim());
      problem.textContent = text ?? '';
      submit.disabled = text !== null;
    };
    name.addEventListener('input', check);
    const send = async () => {
      submit.disabled = true;
      status.replaceChildren(h('span', {}, 'Publishing…'));
      try {
        const reply = await post<{ id: string; release: IRelease }>('releases', {
          model_uri: model.model_uri,
          name: name.value.trim(),
          kind: kind.value,
          description: description.value
        });
        slot.replaceChildren();
        this.showRelease(reply.release, model.inputs);
        void this._loadReleases();
      } catch (error) {
        status.replaceChildren(errorBox(messageOf(error)));
        submit.disabled = false;
      }
    };
    slot.replaceChildren(
      h(
        'form',
        { class: 'mlopshub-publish-form', 'data-testid': 'mlopshub-publish-form' },
        labelled('Model name', name),
        problem,
        labelled('Kind', kind),
        labelled('Description', description),
        h('div', { class: 'mlopshub-actions' }, submit, button('Cancel', () => slot.replaceChildren())),
        status
      )
    );
    slot.querySelector('form')?.addEventListener('submit', event => event.preventDefault());
    check();
    name.focus();
  }

  /** Follow `release` in the release view (replacing the one followed before). */
  showRelease(release: IRelease, columnsHint: string[] | null = null): void {
    this._view?.dispose();
    this._view = new ReleaseView(release, columnsHint);
    this._releaseBox.replaceChildren(this._view.node);
  }

  private _renderReleases(error: string | null): void {
    if (error) {
      this._releasesBox.replaceChildren(errorBox(error), button('Retry', () => void this._loadReleases(), { id: 'mlopshub-retry-releases' }));
      return;
    }
    if (!this._releases.length) {
      this._releasesBox.replaceChildren(h('p', { class: 'mlopshub-empty' }, 'No releases yet: publish a logged model above.'));
      return;
    }
    this._releasesBox.replaceChildren(h('ul', { class: 'mlopshub-release-list' }, ...this._releases.map(release => this._releaseRow(release))));
  }

  private _releaseRow(release: IRelease): HTMLElement {
    const slot = h('div', { class: 'mlopshub-rollback-slot' });
    const open = h('a', { href: '#', class: 'mlopshub-open-release' }, `${release.model_name} v${release.version}`);
    open.addEventListener('click', event => {
      event.preventDefault();
      this.showRelease(release);
    });
    return h(
      'li',
      { class: 'mlopshub-release-row', 'data-testid': 'mlopshub-release-row', 'data-release': release.id, 'data-model': release.model_name, 'data-state': release.state },
      open,
      ' ',
      h('span', { class: `mlopshub-release-state mlopshub-state-${release.state}`, 'data-testid': 'mlopshub-release-state', 'data-state': release.state }, stateLabel(release.state)),
      h('span', { class: 'mlopshub-release-meta' }, ` · ${release.kind} · by ${release.publisher}`),
      release.state === 'production'
        ? button('Roll back', () => this._openRollback(release, slot), { class: 'jp-Button mlopshub-button mlopshub-rollback', 'data-testid': 'mlopshub-rollback' })
        : null,
      slot
    );
  }

  private _openRollback(release: IRelease, slot: HTMLElement): void {
    if (slot.childElementCount) {
      slot.replaceChildren();
      return;
    }
    const reason = h('input', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-rollback-reason', placeholder: 'Why (required)' }) as HTMLInputElement;
    const status = h('div', {});
    const confirm = button(
      `Roll back ${release.model_name}`,
      async () => {
        if (!reason.value.trim()) {
          status.replaceChildren(errorBox('Say why you roll back: the team and model risk read it.'));
          return;
        }
        confirm.disabled = true;
        try {
          const reply = await post<{ rolled_back: IRelease; restored: IRelease }>(`models/${encodeURIComponent(release.model_name)}/rollback`, { reason: reason.value });
          slot.replaceChildren(h('p', { class: 'mlopshub-done' }, `Version ${reply.restored.version} is back in production.`));
          void this._loadReleases();
        } catch (error) {
          status.replaceChildren(errorBox(messageOf(error)));
          confirm.disabled = false;
        }
      },
      { class: 'jp-Button jp-mod-warn mlopshub-button', 'data-testid': 'mlopshub-rollback-confirm' }
    );
    slot.replaceChildren(h('div', { class: 'mlopshub-actions' }, reason, confirm, button('Cancel', () => slot.replaceChildren())), status);
    reason.focus();
  }

  private _renderError(error: unknown, retry: () => void): void {
    this._body.replaceChildren(
      errorBox(`Models are unavailable: ${messageOf(error)}`),
      button('Retry', retry, { id: 'mlopshub-retry-models' })
    );
  }
}

/**
 * The Approvals view, shown to model validators: every release awaiting
 * approval (any team) with what a reviewer needs, Approve (with a comment)
 * and Reject (with a reason). The pipeline decides; its refusal (for example
 * approving one's own release) is shown as it says it.
 */
export class ApprovalsSection extends Widget {
  private _body: HTMLElement;

  constructor() {
    super();
    this.addClass('mlopshub-section');
    this.addClass('mlopshub-approvals');
    this.id = 'mlopshub-approvals';
    this.node.setAttribute('data-testid', 'mlopshub-approvals');
    this._body = h('div', { class: 'mlopshub-section-body' });
    this.node.append(h('h3', {}, 'Approvals'), this._body);
  }

  /** Load the releases awaiting approval. */
  async refresh(): Promise<void> {
    try {
      const reply = await requestAPI<{ releases: IRelease[] }>('releases', {}, { state: 'awaiting_approval' });
      const refresh = button('Refresh', () => void this.refresh(), { id: 'mlopshub-refresh-approvals' });
      if (!reply.releases.length) {
        this._body.replaceChildren(h('div', { class: 'mlopshub-actions' }, refresh), h('p', { class: 'mlopshub-empty' }, 'Nothing awaits approval.'));
        return;
      }
      this._body.replaceChildren(h('div', { class: 'mlopshub-actions' }, refresh), ...reply.releases.map(release => this._card(release)));
    } catch (error) {
      this._body.replaceChildren(errorBox(`Approvals are unavailable: ${messageOf(error)}`), button('Retry', () => void this.refresh(), { id: 'mlopshub-retry-approvals' }));
    }
  }

  private _card(release: IRelease): HTMLElement {
    const comment = h('input', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-approve-comment', placeholder: 'Comment (optional)' }) as HTMLInputElement;
    const reason = h('input', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-reject-reason', placeholder: 'Reason to reject (required)' }) as HTMLInputElement;
    const status = h('div', { class: 'mlopshub-approval-status' });
    const act = async (action: 'approve' | 'reject', body: Record<string, string>) => {
      approve.disabled = reject.disabled = true;
      try {
        const answer = await post<IRelease>(`releases/${encodeURIComponent(release.id)}/${action}`, body);
        status.replaceChildren(h('p', { class: 'mlopshub-done' }, `${action === 'approve' ? 'Approved' : 'Rejected'}: ${stateLabel(answer.state)}.`));
        window.setTimeout(() => void this.refresh(), POLL_MS);
      } catch (error) {
        status.replaceChildren(errorBox(messageOf(error)));
        approve.disabled = reject.disabled = false;
      }
    };
    const approve = button('Approve', () => void act('approve', { comment: comment.value }), { class: 'jp-Button jp-mod-accept mlopshub-button mlopshub-approve', 'data-testid': 'mlopshub-approve' });
    const reject = button(
      'Reject',
      () => {
        if (!reason.value.trim()) {
          status.replaceChildren(errorBox('Say why you reject it: the publisher reads the reason.'));
          return;
        }
        void act('reject', { reason: reason.value });
      },
      { class: 'jp-Button jp-mod-warn mlopshub-button mlopshub-reject', 'data-testid': 'mlopshub-reject' }
    );
    const facts: [string, string][] = [
      ['team', release.team],
      ['model', `${release.model_name} v${release.version} (${release.kind})`],
      ['publisher', release.publisher],
      ['run', release.run_id ?? '–'],
      ...releaseMetrics(release).map(([name, value]) => [name, value === null ? '–' : formatNumber(value)] as [string, string]),
      ...releaseLineage(release)
    ];
    return h(
      'div',
      { class: 'mlopshub-approval mlopshub-release', 'data-testid': 'mlopshub-approval', 'data-release': release.id, 'data-model': release.model_name },
      h('div', { class: 'mlopshub-release-title' }, h('strong', {}, `${release.model_name} v${release.version}`), ' ', h('span', { class: 'mlopshub-release-state', 'data-testid': 'mlopshub-release-state', 'data-state': release.state }, stateLabel(release.state))),
      release.description ? h('p', { class: 'mlopshub-release-description' }, release.description) : null,
      h('dl', { class: 'mlopshub-facts' }, ...facts.flatMap(([key, value]) => [h('dt', {}, key), h('dd', { 'data-fact': key }, value)])),
      gateList(release),
      release.endpoints.staging ? endpointBlock('staging', release.endpoints.staging, signatureColumns(release)) : null,
      h('div', { class: 'mlopshub-actions' }, comment, approve),
      h('div', { class: 'mlopshub-actions' }, reason, reject),
      status
    );
  }
}
