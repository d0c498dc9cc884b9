/**
 * The publish request, typed by the pipeline's own OpenAPI document
 * (src/contract.ts, generated from it), and built from what the sidebar's
 * publish form holds. Free of the DOM: unit-tested with jest.
 *
 * The rules themselves (a name's pattern, a schedule's cron syntax) are
 * checked by the server side against the document and by the pipeline;
 * the form shows their refusal next to the field at fault.
 */

import type { components, paths } from './contract';
import type { IRelease } from './release';

export type PublishRequest = components['schemas']['PublishRequest'];
export type BatchSettings = components['schemas']['BatchSettings'];
export type PublishKind = PublishRequest['kind'];
export type PublishResponse = paths['/api/releases']['post']['responses'][201]['content']['application/json'];
/** The answer to a publish as the sidebar follows it: the document's, with the release as release.ts reads one. */
export type PublishReply = PublishResponse & { release: IRelease };

/** What the publish form holds, as typed (batch fields are kept, but sent only for kind batch). */
export interface IPublishForm {
  model_uri: string;
  name: string;
  kind: PublishKind;
  description: string;
  input: string;
  rev: string;
  schedule: string;
  repo: string;
}

/** The batch settings the form offers, by their name in the request's `batch` object. */
export type BatchKey = keyof BatchSettings & keyof IPublishForm;

/** The batch fields the form offers: the request field each fills, its label, an example and a hint. */
export const BATCH_FIELDS: { key: BatchKey; label: string; placeholder: string; hint: string }[] = [
  {
    key: 'input',
    label: 'Input CSV',
    placeholder: 'data/new_loans.csv',
    hint: 'Required: the DVC-tracked CSV the model scores, relative to the project, e.g. data/new_loans.csv.'
  },
  {
    key: 'rev',
    label: 'Input version (git revision)',
    placeholder: 'main',
    hint: "The git branch, tag or commit of the input's version, e.g. main or v2; empty: main."
  },
  {
    key: 'schedule',
    label: 'Schedule (cron, UTC)',
    placeholder: '0 6 * * MON-FRI',
    hint: "Five cron fields as a Kubernetes CronJob takes them (minute hour day-of-month month day-of-week), e.g. '0 6 * * MON-FRI' for 06:00 UTC on weekdays, or '@daily'; empty: run on demand only."
  },
  {
    key: 'repo',
    label: 'Project (optional)',
    placeholder: '~/credit-project',
    hint: 'The project folder or git URL the input lives in; empty: the project the run was trained in.'
  }
];

/** Why the form can't be sent yet for a batch model, or null: the one field the pipeline always needs. */
export function batchProblem(form: Pick<IPublishForm, 'kind' | 'input'>): string | null {
  return form.kind === 'batch' && !form.input.trim() ? 'a batch model needs its input CSV' : null;
}

/**
 * The body to publish `form` with. Batch settings go only with kind batch
 * (the pipeline refuses them for an online model); an empty optional batch
 * field is left out so the pipeline's default applies (rev main, no schedule,
 * the run's project). Texts are trimmed; a schedule's spacing is the pipeline's to normalise.
 */
export function publishBody(form: IPublishForm): PublishRequest {
  const body: PublishRequest = { model_uri: form.model_uri, name: form.name.trim(), kind: form.kind, description: form.description };
  if (form.kind !== 'batch') {
    return body;
  }
  const batch: BatchSettings = { input: form.input.trim() };
  for (const key of ['rev', 'schedule', 'repo'] as const) {
    const value = form[key].trim();
    if (value) {
      batch[key] = value;
    }
  }
  return { ...body, batch };
}

/** The request field a refusal names (the server extension and the pipeline answer it with a 422), or null. */
export function refusedField(error: unknown): string | null {
  const field = (error as { field?: unknown } | null)?.field;
  return typeof field === 'string' ? field : null;
}
