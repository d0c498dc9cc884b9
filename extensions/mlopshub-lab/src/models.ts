import { Poll } from '@lumino/polling';
import { Widget } from '@lumino/widgets';

import { button, h } from './dom';
import { formatNumber } from './model';
import { driftedMark } from './monitoring';
import { driftedModels, IMonitoredModel, MonitoringStage, stageOfRelease } from './monitoringmodel';
import { endpointBlock, errorBox, facts, gateList, labelled, messageOf, pace, pollFor, releaseChanged } from './parts';
import { BatchKey, batchProblem, BATCH_FIELDS, IPublishForm, PublishKind, PublishReply, publishBody, refusedField } from './publish';
import { post, requestAPI } from './request';
import {
  ILoggedModel,
  IRelease,
  listInterval,
  MODEL_NAME_RULE,
  modelNameProblem,
  pollDelay,
  ReleaseState,
  releaseMetrics,
  signatureColumns,
  stateLabel,
  stepLines,
  suggestedName
} from './release';
import { IViews } from './views';

/** How often the Models section asks which models drifted (ms). */
const DRIFT_EVERY = 60_000;
/** States in which the sidebar shows a release's staging endpoint (to try it before production). */
const STAGING_SHOWN: readonly ReleaseState[] = ['staging', 'awaiting_approval', 'approved'];

/** Where a refusal of the request field `field` is shown: under that field, findable by `data-field`. */
function refusalSlot(field: string): HTMLElement {
  return h('div', { class: 'mlopshub-publish-refusal', 'data-testid': 'mlopshub-publish-refusal', 'data-field': field });
}

/**
 * The batch settings of the publish form (input, revision, schedule, project),
 * each with its hint and the slot where the pipeline's refusal of it is shown
 * (by request field: `batch.schedule`); a refusal goes when the user edits that field.
 */
function batchFields(modelId: string): {
  box: HTMLElement;
  inputs: Record<BatchKey, HTMLInputElement>;
  refusals: Map<string, HTMLElement>;
  problem: HTMLElement;
} {
  const inputs = {} as Record<BatchKey, HTMLInputElement>;
  const refusals = new Map([['batch', refusalSlot('batch')]]);
  const problem = h('p', { class: 'mlopshub-field-problem', 'data-testid': 'mlopshub-publish-batch-problem' });
  const rows = BATCH_FIELDS.flatMap(({ key, label, placeholder, hint }) => {
    const hintId = `mlopshub-batch-${key}-${modelId}`;
    const input = h('input', { class: 'jp-mod-styled', 'data-testid': `mlopshub-publish-${key}`, name: key, placeholder, 'aria-describedby': hintId, required: key === 'input' }) as HTMLInputElement;
    const refusal = refusalSlot(`batch.${key}`);
    input.addEventListener('input', () => refusal.replaceChildren());
    inputs[key] = input;
    refusals.set(`batch.${key}`, refusal);
    return [labelled(label, input), h('p', { class: 'mlopshub-hint', id: hintId }, hint), ...(key === 'input' ? [problem] : []), refusal];
  });
  const box = h('div', { class: 'mlopshub-publish-batch', 'data-testid': 'mlopshub-publish-batch' }, refusals.get('batch'), ...rows);
  return { box, inputs, refusals, problem };
}

/**
 * One release followed live: its steps, gates, endpoints with an example
 * request, and why it stopped. Polls the release while it moves by itself;
 * stops when it waits for a person or has ended, or when disposed.
 */
export class ReleaseView {
  readonly node: HTMLElement;
  private _poll: Poll | null = null;

  constructor(
    private _release: IRelease,
    private readonly _columnsHint: string[] | null = null,
    private readonly _views: IViews | null = null
  ) {
    this.node = h('div', { class: 'mlopshub-release', 'data-testid': 'mlopshub-release', 'data-release': _release.id });
    this._render(null);
    const delay = pollDelay(_release.state);
    if (delay !== null) {
      this._poll = pollFor(this.node, delay, () => this._look());
    }
  }

  get release(): IRelease {
    return this._release;
  }

  dispose(): void {
    this._poll?.dispose();
    this._poll = null;
  }

  /** One look at the release; the poll slows down while it waits for a person and ends with it. */
  private async _look(): Promise<void> {
    try {
      this._release = await requestAPI<IRelease>(`releases/${encodeURIComponent(this._release.id)}`);
      this._render(null);
    } catch (error) {
      this._render(messageOf(error));
      throw error; // the poll backs off
    }
    const delay = pollDelay(this._release.state);
    if (delay === null) {
      this.dispose();
      releaseChanged.emit(this._release);
    } else if (this._poll) {
      this._poll.frequency = pace(delay);
    }
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
      release.endpoints.staging && STAGING_SHOWN.includes(release.state)
        ? endpointBlock('staging', release.endpoints.staging, columns)
        : null,
      release.endpoints.production && release.state === 'production' ? endpointBlock('production', release.endpoints.production, columns) : null,
      release.state === 'awaiting_approval' ? h('p', { class: 'mlopshub-hint' }, 'A model validator who did not publish it approves it from their review page.') : null,
      this._views ? button('Open in a tab', () => this._views?.openRelease(release.id), { 'data-testid': 'mlopshub-open-release-tab' }) : null,
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
  /** The team's drifted models (the pipeline's last checks), each with the stage whose release is marked. */
  private _drifted = new Map<string, MonitoringStage>();
  private _driftAsked = 0;
  private _view: ReleaseView | null = null;
  /** Each model's publish form slot, kept across re-renders so a reload never drops what the user typed. */
  private _slots = new Map<string, HTMLElement>();
  private _body: HTMLElement;
  private _releaseBox: HTMLElement;
  private _releasesBox: HTMLElement;
  /** Looks at the team's releases while the section is in sight: their states follow without Refresh. */
  private _poll: Poll;

  constructor(
    private readonly _views: IViews,
    private readonly _pageSize = 25
  ) {
    super();
    this.addClass('mlopshub-section');
    this.addClass('mlopshub-models');
    this.id = 'mlopshub-models';
    this.node.setAttribute('data-testid', 'mlopshub-models');
    this._body = h('div', { class: 'mlopshub-section-body' });
    this._releaseBox = h('div', { class: 'mlopshub-release-box', id: 'mlopshub-release-box' });
    this._releasesBox = h('div', { class: 'mlopshub-releases', id: 'mlopshub-releases', 'data-testid': 'mlopshub-releases' });
    this.node.append(h('h3', {}, 'Models'), this._body, this._releaseBox, h('h4', {}, 'Releases of the team'), this._releasesBox);
    this._poll = pollFor(this.node, listInterval([]), () => this._pollReleases());
    releaseChanged.connect(this._onChanged, this);
  }

  dispose(): void {
    releaseChanged.disconnect(this._onChanged, this);
    this._poll.dispose();
    this._view?.dispose();
    super.dispose();
  }

  private _onChanged(): void {
    void this._loadReleases();
  }

  private async _pollReleases(): Promise<void> {
    if (!(await this._loadReleases())) {
      throw new Error('releases unavailable'); // the poll backs off
    }
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

  /** Load the team's releases; false when the pipeline did not answer (shown with Retry). */
  private async _loadReleases(): Promise<boolean> {
    try {
      const [reply] = await Promise.all([requestAPI<{ releases: IRelease[] }>('releases'), this._loadDrifted()]);
      this._releases = reply.releases.filter(release => !this._workspace || release.team === this._workspace);
      this._renderReleases(null);
      this._poll.frequency = pace(listInterval(this._releases));
      return true;
    } catch (error) {
      this._renderReleases(`Releases are unavailable: ${messageOf(error)}`);
      return false;
    }
  }

  /**
   * Which models drifted, asked at most every DRIFT_EVERY ms (releases are looked at
   * more often). Without an answer (a pipeline without monitoring) no model is marked.
   */
  private async _loadDrifted(): Promise<void> {
    if (Date.now() - this._driftAsked < DRIFT_EVERY) {
      return;
    }
    this._driftAsked = Date.now();
    this._drifted = await requestAPI<{ models: IMonitoredModel[] }>('monitoring')
      .then(reply => driftedModels(reply.models))
      .catch(() => new Map<string, MonitoringStage>());
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
    // No maxlength: a browser would cut a pasted name silently; the rule is said and checked instead.
    const name = h('input', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-publish-name', value: suggestedName(model), 'aria-describedby': `mlopshub-rule-${model.model_id}` }) as HTMLInputElement;
    const kind = h(
      'select',
      { class: 'jp-mod-styled', 'data-testid': 'mlopshub-publish-kind' },
      h('option', { value: 'online', selected: true }, 'online (REST endpoint)'),
      h('option', { value: 'batch' }, 'batch (scheduled job)')
    ) as HTMLSelectElement;
    const description = h('textarea', { class: 'jp-mod-styled', 'data-testid': 'mlopshub-publish-description', rows: '2', maxlength: '2000' }) as HTMLTextAreaElement;
    const batch = batchFields(model.model_id);
    // Holds the batch settings while the kind is batch; they keep what was typed while the kind is online.
    const batchSlot = h('div', { class: 'mlopshub-publish-batch-slot' });
    const refusals = new Map([['name', refusalSlot('name')], ['description', refusalSlot('description')], ...batch.refusals]);
    const problem = h('p', { class: 'mlopshub-field-problem', 'data-testid': 'mlopshub-publish-problem' });
    const status = h('div', { class: 'mlopshub-publish-status' });
    const submit = button('Publish', () => void send(), { class: 'jp-Button jp-mod-accept mlopshub-button', 'data-testid': 'mlopshub-publish-submit' });
    const form = (): IPublishForm => ({
      model_uri: model.model_uri ?? '',
      name: name.value,
      kind: kind.value as PublishKind,
      description: description.value,
      input: batch.inputs.input.value,
      rev: batch.inputs.rev.value,
      schedule: batch.inputs.schedule.value,
      repo: batch.inputs.repo.value
    });
    const check = () => {
      const text = modelNameProblem(name.value.trim());
      const missing = batchProblem(form());
      problem.textContent = text ?? '';
      batch.problem.textContent = missing ?? '';
      submit.disabled = text !== null || missing !== null;
    };
    const showKind = () => {
      batchSlot.replaceChildren(...(kind.value === 'batch' ? [batch.box] : []));
      check();
    };
    name.addEventListener('input', check);
    name.addEventListener('input', () => refusals.get('name')?.replaceChildren());
    description.addEventListener('input', () => refusals.get('description')?.replaceChildren());
    batch.inputs.input.addEventListener('input', check);
    kind.addEventListener('change', showKind);
    const send = async () => {
      submit.disabled = true;
      refusals.forEach(refusal => refusal.replaceChildren());
      status.replaceChildren(h('span', {}, 'Publishing…'));
      try {
        const reply = await post<PublishReply>('releases', publishBody(form()));
        slot.replaceChildren();
        this.showRelease(reply.release, model.inputs);
        releaseChanged.emit(reply.release);
      } catch (error) {
        // A refused field's message goes under that field (if the form still shows it); any other under the form.
        const field = refusals.get(refusedField(error) ?? '');
        status.replaceChildren();
        (field && slot.contains(field) ? field : status).replaceChildren(errorBox(messageOf(error)));
        submit.disabled = false;
      }
    };
    slot.replaceChildren(
      h(
        'form',
        { class: 'mlopshub-publish-form', 'data-testid': 'mlopshub-publish-form' },
        labelled('Model name', name),
        h('p', { class: 'mlopshub-hint', id: `mlopshub-rule-${model.model_id}`, 'data-testid': 'mlopshub-publish-rule' }, `A model name is ${MODEL_NAME_RULE}.`),
        problem,
        refusals.get('name'),
        labelled('Kind', kind),
        batchSlot,
        labelled('Description', description),
        refusals.get('description'),
        h('div', { class: 'mlopshub-actions' }, submit, button('Cancel', () => slot.replaceChildren())),
        status
      )
    );
    slot.querySelector('form')?.addEventListener('submit', event => event.preventDefault());
    showKind();
    name.focus();
  }

  /** Follow `release` in the release view (replacing the one followed before). */
  showRelease(release: IRelease, columnsHint: string[] | null = null): void {
    this._view?.dispose();
    this._view = new ReleaseView(release, columnsHint, this._views);
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
    const stage = stageOfRelease(release.state);
    const slot = h('div', { class: 'mlopshub-rollback-slot' });
    const open = h('a', { href: '#', class: 'mlopshub-open-release' }, `${release.model_name} v${release.version}`);
    open.addEventListener('click', event => {
      event.preventDefault();
      this._views.openRelease(release.id);
    });
    return h(
      'li',
      { class: 'mlopshub-release-row', 'data-testid': 'mlopshub-release-row', 'data-release': release.id, 'data-model': release.model_name, 'data-state': release.state },
      open,
      ' ',
      h('span', { class: `mlopshub-release-state mlopshub-state-${release.state}`, 'data-testid': 'mlopshub-release-state', 'data-state': release.state }, stateLabel(release.state)),
      h('span', { class: 'mlopshub-release-meta' }, ` · ${release.kind} · by ${release.publisher}`),
      stage && this._drifted.get(release.model_name) === stage ? driftedMark(release.model_name) : null,
      stage
        ? button('Monitoring', () => this._views.openMonitoring(release.model_name, stage), { class: 'jp-Button mlopshub-button mlopshub-open-monitoring', 'data-testid': 'mlopshub-open-monitoring', 'data-stage': stage, title: `Traffic, drift and quality of ${release.model_name} in ${stage}` })
        : null,
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
          releaseChanged.emit(reply.restored);
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
 * The Approvals section, shown to model validators: every release awaiting
 * approval (any team), each with what it is and a Review button that opens
 * its review page in the main area, where the decision is made. The list
 * follows the pipeline by itself: a release decided anywhere leaves it.
 */
export class ApprovalsSection extends Widget {
  private _body: HTMLElement;
  private _poll: Poll;
  /** Called with how many releases await approval, for the section's badge. */
  onCount: (count: number) => void = () => undefined;

  constructor(private readonly _views: IViews) {
    super();
    this.addClass('mlopshub-section');
    this.addClass('mlopshub-approvals');
    this.id = 'mlopshub-approvals';
    this.node.setAttribute('data-testid', 'mlopshub-approvals');
    this._body = h('div', { class: 'mlopshub-section-body' });
    this.node.append(h('h3', {}, 'Approvals'), this._body);
    this._poll = pollFor(this.node, 5000, () => this._look());
    releaseChanged.connect(this._onChanged, this);
  }

  dispose(): void {
    releaseChanged.disconnect(this._onChanged, this);
    this._poll.dispose();
    super.dispose();
  }

  private _onChanged(): void {
    void this.refresh();
  }

  /** Load the releases awaiting approval. */
  async refresh(): Promise<void> {
    await this._look().catch(() => undefined);
  }

  private async _look(): Promise<void> {
    const refresh = button('Refresh', () => void this.refresh(), { id: 'mlopshub-refresh-approvals' });
    let releases: IRelease[];
    try {
      releases = (await requestAPI<{ releases: IRelease[] }>('releases', {}, { state: 'awaiting_approval' satisfies ReleaseState })).releases;
    } catch (error) {
      this._body.replaceChildren(errorBox(`Approvals are unavailable: ${messageOf(error)}`), button('Retry', () => void this.refresh(), { id: 'mlopshub-retry-approvals' }));
      throw error;
    }
    this.onCount(releases.length);
    this._body.replaceChildren(
      h('div', { class: 'mlopshub-actions' }, refresh, button('Monitoring', () => this._views.openMonitoring(), { 'data-testid': 'mlopshub-open-monitoring-all', title: 'Traffic, drift and quality of every team’s models in staging and production' })),
      ...(releases.length ? releases.map(release => this._card(release)) : [h('p', { class: 'mlopshub-empty' }, 'Nothing awaits approval.')])
    );
  }

  private _card(release: IRelease): HTMLElement {
    const metrics = releaseMetrics(release)
      .slice(0, 3)
      .map(([name, value]) => `${name} ${value === null ? '–' : formatNumber(value)}`)
      .join(' · ');
    return h(
      'div',
      { class: 'mlopshub-approval', 'data-testid': 'mlopshub-approval', 'data-release': release.id, 'data-model': release.model_name },
      h('div', { class: 'mlopshub-release-title' }, h('strong', {}, `${release.model_name} v${release.version}`), ' ', h('span', { class: 'mlopshub-release-state', 'data-testid': 'mlopshub-release-state', 'data-state': release.state }, stateLabel(release.state))),
      facts([
        ['team', release.team],
        ['publisher', release.publisher],
        ['published', new Date(release.created).toLocaleString()],
        ...(metrics ? [['hold-out', metrics] as [string, string]] : [])
      ]),
      button('Review', () => this._views.openReview(release.id), { class: 'jp-Button jp-mod-accept mlopshub-button', 'data-testid': 'mlopshub-review' })
    );
  }
}
