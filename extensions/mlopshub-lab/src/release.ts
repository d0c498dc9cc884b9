/**
 * The Models section's logic, free of the DOM: release states and steps as
 * people read them, publish-name checks, and the example request for an
 * endpoint. Unit-tested with jest.
 */

import type { components } from './contract';

/** A release's state, as the pipeline's OpenAPI document enumerates them (`Release.state`, src/contract.ts). */
export type ReleaseState = NonNullable<components['schemas']['Release']['state']>;

export interface ILoggedModel {
  model_id: string;
  name: string;
  experiment_id: string;
  experiment: string | null;
  run_id: string | null;
  run_name: string | null;
  created: number | null;
  status: string | null;
  metrics: Record<string, number | null>;
  lineage: Record<string, string>;
  has_signature: boolean | null;
  inputs: string[] | null;
  model_uri: string | null;
}

export interface IStep {
  name: string;
  status: string;
  started?: string | null;
  finished?: string | null;
  detail?: string;
}

export interface IGate {
  name: string;
  passed: boolean;
  reason: string;
  fix?: string | null;
  details?: Record<string, any>;
}

export interface IRelease {
  id: string;
  model_name: string;
  version: string;
  model_uri: string;
  run_id: string | null;
  team: string;
  kind: string;
  description: string;
  publisher: string;
  state: ReleaseState;
  steps: IStep[];
  gate_results: IGate[];
  endpoints: { staging?: string; production?: string };
  approver: string | null;
  comment: string;
  reason: string;
  created: string;
  updated: string;
}

export interface IMe {
  name: string;
  groups: string[];
  validator: boolean;
  /** Validators and platform admins: the pipeline answers them the audit log. */
  auditor: boolean;
  publish_teams: string[];
  pipeline: boolean;
}

/** `states`, typed as listing every release state: tsc refuses the call when one is missing, naming it. */
function everyState<const T extends readonly ReleaseState[]>(
  states: T & ([Exclude<ReleaseState, T[number]>] extends [never] ? unknown : { missing: Exclude<ReleaseState, T[number]> })
): T {
  return states;
}

/** Every release state, in the pipeline's order (hub/mlopshub/pipeline/release.py's `State`). When the document
 * gains a state, tsc fails here and at STATE_LABELS until it is listed and labelled; then decide whether it is
 * settled or ended below. src/__tests__/contract.spec.ts holds the list to the document itself. */
export const RELEASE_STATES: readonly ReleaseState[] = everyState([
  'registered',
  'gating',
  'gates_failed',
  'staging',
  'awaiting_approval',
  'approved',
  'rejected',
  'production',
  'superseded',
  'rolled_back',
  'failed'
] as const);

/** Whether `state`, as the pipeline sent it (perhaps one newer than this extension knows), is one of `states`. */
function isOneOf(states: readonly ReleaseState[], state: string): boolean {
  return (states as readonly string[]).includes(state);
}

/** States in which a release waits for a person or has ended: the release view stops polling there. */
export const SETTLED_STATES: readonly ReleaseState[] = ['awaiting_approval', 'gates_failed', 'rejected', 'production', 'superseded', 'rolled_back', 'failed'];

/** Whether a release in `state` will change without anyone acting (so its view keeps polling). */
export function isMoving(state: string): boolean {
  return !isOneOf(SETTLED_STATES, state);
}

/** Milliseconds between looks at a release in `state`: often while it moves, now and then while it waits for
 * a validator (the publisher sees the approval and production arrive), never once it has ended. */
export function pollDelay(state: string): number | null {
  if (isMoving(state)) {
    return 1500;
  }
  return state === 'awaiting_approval' ? 5000 : null;
}

/**
 * States the pipeline never moves a release out of (hub/mlopshub/pipeline/release.py): a release in
 * production or superseded still changes (a newer version or a roll back), one of these never does.
 */
export const ENDED_STATES: readonly ReleaseState[] = ['gates_failed', 'rejected', 'rolled_back', 'failed'];

/** Milliseconds between looks at a release on its own page: as `pollDelay` while it moves or awaits
 * approval, every 30 s in production or superseded (a roll back changes it), never once it has ended. */
export function pageDelay(state: string): number | null {
  return pollDelay(state) ?? (isOneOf(ENDED_STATES, state) ? null : 30_000);
}

/** A label for each state (tsc refuses a state left out). */
const STATE_LABELS: Record<ReleaseState, string> = {
  registered: 'registered',
  gating: 'checking gates',
  gates_failed: 'gates failed',
  staging: 'deploying to staging',
  awaiting_approval: 'awaiting approval',
  approved: 'approved, going to production',
  rejected: 'rejected',
  production: 'in production',
  superseded: 'superseded',
  rolled_back: 'rolled back',
  failed: 'failed'
};

/** The words shown for a release state ("awaiting_approval" -> "awaiting approval"). */
export function stateLabel(state: string): string {
  return (STATE_LABELS as Partial<Record<string, string>>)[state] ?? state.replace(/_/g, ' ');
}

const STEP_LABELS: Record<string, string> = {
  registered: 'Registered',
  gates: 'Gates',
  staging: 'Staging endpoint',
  approval: 'Approval',
  production: 'Production'
};

const STATUS_MARKS: Record<string, string> = { passed: '✓', failed: '✗', running: '…', pending: '○' };

/** One line per step, in the pipeline's order: label, status mark and the pipeline's detail. */
export function stepLines(release: Pick<IRelease, 'steps'>): { name: string; label: string; status: string; mark: string; detail: string }[] {
  return release.steps.map(step => ({
    name: step.name,
    label: STEP_LABELS[step.name] ?? step.name,
    status: step.status,
    mark: STATUS_MARKS[step.status] ?? '?',
    detail: step.detail ?? ''
  }));
}

/** Same rule as the pipeline: 1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit (the
 * `pattern` of a publish request's name in its OpenAPI document; a jest spec holds the two together). */
export const MODEL_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** The model-name rule as the publish form states it, under the name field. */
export const MODEL_NAME_RULE = "1 to 63 letters, digits, '_', '.' or '-', starting with a letter or digit";

/** Why `name` can't be a model name, or null when it can. */
export function modelNameProblem(name: string): string | null {
  if (!name) {
    return 'give the model a name';
  }
  if (name.length > 63) {
    return `the name is ${name.length} characters; at most 63: shorten it (nothing is cut for you)`;
  }
  if (!MODEL_NAME.test(name)) {
    return "use letters, digits, '_', '.' or '-', starting with a letter or digit";
  }
  return null;
}

/**
 * A name to start from for a logged model: its artifact name, unless that is
 * MLflow's generic "model", then the experiment's name; with characters the
 * rule refuses replaced. A name too long stays whole: the form says so and the
 * data scientist chooses how to shorten it (a cut could clash with another model).
 */
export function suggestedName(model: Pick<ILoggedModel, 'name' | 'experiment'>): string {
  const base = model.name && model.name !== 'model' ? model.name : model.experiment || model.name || 'model';
  const cleaned = base.replace(/[^A-Za-z0-9_.-]+/g, '-').replace(/^[^A-Za-z0-9]+/, '');
  return cleaned || 'model';
}

/** The input columns of a release's model, from its signature gate (MLflow keeps them as a JSON string). */
export function signatureColumns(release: Pick<IRelease, 'gate_results'>): string[] | null {
  const gate = release.gate_results.find(g => g.name === 'signature_and_example');
  const inputs = gate?.details?.signature?.inputs;
  let specs: unknown = inputs;
  if (typeof inputs === 'string') {
    try {
      specs = JSON.parse(inputs);
    } catch {
      return null;
    }
  }
  if (!Array.isArray(specs)) {
    return null;
  }
  const names = specs.map(spec => (spec && typeof spec === 'object' ? (spec as any).name : undefined));
  return names.length && names.every(name => typeof name === 'string') ? (names as string[]) : null;
}

/** One row of zeros in the model's signature columns (MLflow's `dataframe_split`): the example request's body. */
export function exampleBody(columns: string[]): { dataframe_split: { columns: string[]; data: number[][] } } {
  return { dataframe_split: { columns, data: [columns.map(() => 0)] } };
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * A `curl` line that scores one row at `endpoint` (MLflow's `dataframe_split`
 * format), authenticated with the workspace's own token. Without known
 * columns it shows placeholders to replace.
 */
export function exampleRequest(endpoint: string, columns: string[] | null): string {
  const body = columns?.length ? exampleBody(columns) : { dataframe_split: { columns: ['<feature>'], data: [['<value>']] } };
  return [
    `curl -X POST ${shellQuote(endpoint)} \\`,
    '  -H "Authorization: token $JUPYTERHUB_API_TOKEN" \\',
    "  -H 'Content-Type: application/json' \\",
    `  -d ${shellQuote(JSON.stringify(body))}`
  ].join('\n');
}

/** The measured metrics of a release (from its metrics gate), for the reviewer. */
export function releaseMetrics(release: Pick<IRelease, 'gate_results'>): [string, number | null][] {
  const gate = release.gate_results.find(g => g.name === 'metrics');
  const metrics = (gate?.details?.metrics ?? {}) as Record<string, number | null>;
  return Object.entries(metrics).sort((a, b) => a[0].localeCompare(b[0]));
}

/** The lineage of a release (from its lineage gate): the git commit and each dataset's DVC version. */
export function releaseLineage(release: Pick<IRelease, 'gate_results'>): [string, string][] {
  const details = release.gate_results.find(g => g.name === 'lineage')?.details ?? {};
  const lines: [string, string][] = [];
  if (details.commit) {
    lines.push(['commit', String(details.commit).slice(0, 12)]);
  }
  for (const [path, digest] of Object.entries((details.data ?? {}) as Record<string, string>).sort()) {
    lines.push([`data ${path}`, String(digest).slice(0, 8)]);
  }
  return lines;
}

export interface IThresholdRow {
  metric: string;
  value: number | null;
  /** "≥ 0.75", "≤ 0.4", "≥ 0.7 and ≤ 0.9", or "" when the team sets no threshold for it. */
  bound: string;
  /** Whether the value is within its threshold; null when there is none. */
  met: boolean | null;
}

/** The hold-out metrics of a release against the team's thresholds (from its metrics gate), thresholds first. */
export function thresholdRows(release: Pick<IRelease, 'gate_results'>): IThresholdRow[] {
  const details = release.gate_results.find(g => g.name === 'metrics')?.details ?? {};
  const metrics = (details.metrics ?? {}) as Record<string, number | null>;
  const thresholds = (details.thresholds ?? {}) as Record<string, { min?: number; max?: number }>;
  const names = [...new Set([...Object.keys(thresholds).sort(), ...Object.keys(metrics).sort()])];
  return names.map(metric => {
    const value = metrics[metric] ?? null;
    const bounds = thresholds[metric];
    if (!bounds) {
      return { metric, value, bound: '', met: null };
    }
    const parts = [bounds.min !== undefined ? `≥ ${bounds.min}` : '', bounds.max !== undefined ? `≤ ${bounds.max}` : ''].filter(Boolean);
    const met = value !== null && (bounds.min === undefined || value >= bounds.min) && (bounds.max === undefined || value <= bounds.max);
    return { metric, value, bound: parts.join(' and '), met };
  });
}

export interface IAuditEntry {
  id: number;
  at: string;
  actor: string;
  action: string;
  release_id: string | null;
  model: string | null;
  version: string | null;
  reason: string;
  details: Record<string, unknown>;
}

export interface IAuditFilter {
  model: string;
  actor: string;
  action: string;
  /** Local date-times as a datetime-local input gives them ("2026-12-01T09:00"), or "". */
  since: string;
  until: string;
}

/** The audit log's query for a filter: empty fields left out, local times as ISO times in UTC. */
export function auditQuery(filter: IAuditFilter): Record<string, string> {
  const query: Record<string, string> = {};
  for (const name of ['model', 'actor', 'action'] as const) {
    if (filter[name].trim()) {
      query[name] = filter[name].trim();
    }
  }
  for (const name of ['since', 'until'] as const) {
    const moment = filter[name] ? new Date(filter[name]) : null;
    if (moment && !isNaN(moment.getTime())) {
      query[name] = moment.toISOString();
    }
  }
  return query;
}

/** What to say before a validator's decision is sent: null when it may be sent, else what is missing. */
export function decisionProblem(action: 'approve' | 'reject', text: string): string | null {
  if (text.trim()) {
    return null;
  }
  return action === 'approve'
    ? 'Say what you checked: the comment is kept with the approval in the audit log.'
    : 'Say why you reject it: the publisher reads the reason.';
}

/** How often a list of releases is looked at: often while one of them moves by itself, now and then otherwise. */
export function listInterval(releases: Pick<IRelease, 'state'>[]): number {
  return releases.some(release => isMoving(release.state)) ? 2000 : 10000;
}
