jest.mock('../request', () => ({
  ...jest.requireActual('../request'),
  requestAPI: jest.fn(),
  post: jest.fn()
}));
// JupyterLab's apputils ships ES modules jest does not load; the release view takes only its Clipboard.
jest.mock('@jupyterlab/apputils', () => ({ Clipboard: { copyToSystem: jest.fn() } }));

import { post, RequestError, requestAPI } from '../request';
import { IPublishForm, publishBody } from '../publish';

// jsdom has no DragEvent, which Lumino's drag-and-drop module extends when it loads.
(globalThis as any).DragEvent ??= class DragEvent extends Event {};
const { ModelsSection } = jest.requireActual<typeof import('../models')>('../models');

const logged = {
  model_id: 'm-1',
  name: 'loans',
  experiment_id: '1',
  experiment: 'credit',
  run_id: 'r1',
  run_name: 'r1',
  created: null,
  status: 'READY',
  metrics: {},
  lineage: {},
  has_signature: true,
  inputs: ['amount', 'income'],
  model_uri: 'runs:/r1/model'
};

const registered = {
  id: 'rel-1',
  model_name: 'loans',
  version: '1',
  model_uri: 'runs:/r1/model',
  run_id: 'r1',
  team: 'sme-credit',
  kind: 'batch',
  description: '',
  publisher: 'sam',
  state: 'registered',
  steps: [],
  gate_results: [],
  endpoints: {},
  approver: null,
  comment: '',
  reason: '',
  created: '2026-12-01T09:00:00+00:00',
  updated: ''
};

const views = { openRelease: jest.fn(), openReview: jest.fn(), openCompare: jest.fn(), openAudit: jest.fn(), openMonitoring: jest.fn() };
const tick = () => new Promise(resolve => setTimeout(resolve, 0));

const form = (fields: Partial<IPublishForm>): IPublishForm => ({
  model_uri: 'runs:/r1/model',
  name: 'loans',
  kind: 'online',
  description: '',
  input: '',
  rev: '',
  schedule: '',
  repo: '',
  ...fields
});

describe('the publish body', () => {
  it('carries a batch model’s input, revision and schedule in its batch settings, trimmed', () => {
    expect(publishBody(form({ kind: 'batch', input: ' data/new_loans.csv ', rev: 'v2', schedule: '0 6 * * MON-FRI ' }))).toEqual({
      model_uri: 'runs:/r1/model',
      name: 'loans',
      kind: 'batch',
      description: '',
      batch: { input: 'data/new_loans.csv', rev: 'v2', schedule: '0 6 * * MON-FRI' }
    });
  });

  it('leaves out empty optional batch settings so the pipeline’s defaults apply (rev main, run on demand)', () => {
    expect(publishBody(form({ kind: 'batch', input: 'data/new_loans.csv' })).batch).toEqual({ input: 'data/new_loans.csv' });
  });

  it('sends no batch settings for an online model, even when some were typed', () => {
    expect(publishBody(form({ kind: 'online', input: 'data/new_loans.csv', schedule: '@daily' }))).toEqual({
      model_uri: 'runs:/r1/model',
      name: 'loans',
      kind: 'online',
      description: ''
    });
  });
});

describe('publishing from the Models section', () => {
  let section: InstanceType<typeof ModelsSection>;

  beforeEach(async () => {
    (post as jest.Mock).mockReset();
    (requestAPI as jest.Mock).mockImplementation(async (endpoint: string) =>
      endpoint === 'experiments/workspaces'
        ? { workspaces: ['sme-credit'], current: 'sme-credit' }
        : endpoint === 'models/logged'
          ? { models: [logged], next_page_token: null }
          : { releases: [] }
    );
    section = new ModelsSection(views);
    await section.refresh();
    (section.node.querySelector('[data-testid="mlopshub-publish"]') as HTMLButtonElement).click();
  });

  afterEach(() => section.dispose());

  const field = (testid: string) => section.node.querySelector(`[data-testid="${testid}"]`) as HTMLInputElement | null;
  const type = (testid: string, value: string) => {
    const input = field(testid)!;
    input.value = value;
    input.dispatchEvent(new Event(input.tagName === 'SELECT' ? 'change' : 'input'));
  };
  const submit = () => field('mlopshub-publish-submit') as unknown as HTMLButtonElement;

  it('offers input, revision and schedule, with examples, only when the kind is batch', () => {
    expect(field('mlopshub-publish-batch')).toBeNull();
    type('mlopshub-publish-kind', 'batch');
    const batch = field('mlopshub-publish-batch')!;
    expect(batch.textContent).toContain('Input CSV');
    expect(field('mlopshub-publish-input')!.placeholder).toBe('data/new_loans.csv');
    expect(field('mlopshub-publish-rev')!.placeholder).toBe('main');
    expect(field('mlopshub-publish-schedule')!.placeholder).toBe('0 6 * * MON-FRI');
    expect(batch.textContent).toContain("e.g. '0 6 * * MON-FRI' for 06:00 UTC on weekdays");
    type('mlopshub-publish-kind', 'online');
    expect(field('mlopshub-publish-batch')).toBeNull();
  });

  it('waits for a batch model’s input before it can be published', () => {
    type('mlopshub-publish-kind', 'batch');
    expect(submit().disabled).toBe(true);
    expect(field('mlopshub-publish-batch-problem')!.textContent).toBe('a batch model needs its input CSV');
    type('mlopshub-publish-input', 'data/new_loans.csv');
    expect(submit().disabled).toBe(false);
    expect(field('mlopshub-publish-batch-problem')!.textContent).toBe('');
  });

  it('publishes a batch model with its input, revision and weekday schedule and follows the release', async () => {
    (post as jest.Mock).mockResolvedValue({ id: 'rel-1', release: registered });
    type('mlopshub-publish-kind', 'batch');
    type('mlopshub-publish-input', 'data/new_loans.csv');
    type('mlopshub-publish-rev', 'v2');
    type('mlopshub-publish-schedule', '0 6 * * MON-FRI');
    submit().click();
    await tick();
    expect(post).toHaveBeenCalledWith('releases', {
      model_uri: 'runs:/r1/model',
      name: 'loans',
      kind: 'batch',
      description: '',
      batch: { input: 'data/new_loans.csv', rev: 'v2', schedule: '0 6 * * MON-FRI' }
    });
    expect(field('mlopshub-publish-form')).toBeNull();
    expect(section.node.querySelector('[data-testid="mlopshub-release"]')!.getAttribute('data-release')).toBe('rel-1');
  });

  it('publishes an online model as before, without the batch settings typed before switching back', async () => {
    (post as jest.Mock).mockResolvedValue({ id: 'rel-2', release: { ...registered, id: 'rel-2', kind: 'online' } });
    type('mlopshub-publish-kind', 'batch');
    type('mlopshub-publish-input', 'data/new_loans.csv');
    type('mlopshub-publish-schedule', '@daily');
    type('mlopshub-publish-kind', 'online');
    submit().click();
    await tick();
    expect(post).toHaveBeenCalledWith('releases', { model_uri: 'runs:/r1/model', name: 'loans', kind: 'online', description: '' });
  });

  it('shows the pipeline’s refusal of the schedule under the schedule field, and drops it once the schedule is edited', async () => {
    const message = "batch.schedule: day of week field 'MON-FRY': 'FRY' is not a number; names: SUN, MON, TUE, WED, THU, FRI, SAT";
    (post as jest.Mock).mockRejectedValue(new RequestError(422, message, 'batch.schedule'));
    type('mlopshub-publish-kind', 'batch');
    type('mlopshub-publish-input', 'data/new_loans.csv');
    type('mlopshub-publish-schedule', '0 6 * * MON-FRY');
    submit().click();
    await tick();
    const refusal = section.node.querySelector('[data-testid="mlopshub-publish-refusal"][data-field="batch.schedule"]')!;
    expect(refusal.querySelector('[data-testid="mlopshub-error"]')!.textContent).toBe(message);
    expect(section.node.querySelectorAll('[data-testid="mlopshub-error"]')).toHaveLength(1);
    expect(submit().disabled).toBe(false);
    type('mlopshub-publish-schedule', '0 6 * * MON-FRI');
    expect(refusal.childElementCount).toBe(0);
  });

  it('shows a refusal that names no field of the form under the form', async () => {
    const message = "run 'r1' belongs to team 'retail-scoring'; you publish for: sme-credit";
    (post as jest.Mock).mockRejectedValue(new RequestError(403, message));
    submit().click();
    await tick();
    expect(section.node.querySelector('.mlopshub-publish-status [data-testid="mlopshub-error"]')!.textContent).toBe(message);
  });
});
