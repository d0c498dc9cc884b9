jest.mock('../request', () => ({
  requestAPI: jest.fn(),
  post: jest.fn()
}));
jest.mock('@jupyterlab/apputils', () => ({
  showDialog: jest.fn(),
  Dialog: { cancelButton: () => ({ accept: false }), okButton: () => ({ accept: true }), warnButton: () => ({ accept: true }) }
}));

import { showDialog } from '@jupyterlab/apputils';

import { post, requestAPI } from '../request';

// jsdom has no DragEvent, which Lumino's drag-and-drop module extends when it loads.
(globalThis as any).DragEvent ??= class DragEvent extends Event {};
const { ApprovalsSection } = jest.requireActual<typeof import('../models')>('../models');
const { ReleasePage } = jest.requireActual<typeof import('../releasepage')>('../releasepage');
const { releaseChanged } = jest.requireActual<typeof import('../parts')>('../parts');

const awaiting = {
  id: 'rel-abc',
  model_name: 'loans',
  version: '2',
  model_uri: 'runs:/r1/model',
  run_id: 'r1',
  team: 'sme-credit',
  kind: 'online',
  description: '',
  publisher: 'sam',
  state: 'awaiting_approval' as const,
  steps: [],
  gate_results: [
    { name: 'metrics', passed: true, reason: 'auc 0.81 >= min 0.75', details: { metrics: { auc: 0.81 }, thresholds: { auc: { min: 0.75 } } } },
    { name: 'signature_and_example', passed: true, reason: 'ok', details: { signature: { inputs: '[{"name": "amount"}, {"name": "income"}]' } } }
  ],
  endpoints: { staging: 'http://h/services/models/loans/staging/invocations' },
  approver: null,
  comment: '',
  reason: '',
  created: '2026-12-01T09:00:00+00:00',
  updated: ''
};

const views = { openRelease: jest.fn(), openReview: jest.fn(), openCompare: jest.fn(), openAudit: jest.fn(), openMonitoring: jest.fn() };
const tick = () => new Promise(resolve => setTimeout(resolve, 0));

describe('the Approvals section', () => {
  it('lists what awaits approval with its hold-out metrics and opens the review page', async () => {
    (requestAPI as jest.Mock).mockResolvedValue({ releases: [awaiting] });
    const section = new ApprovalsSection(views);
    const counts: number[] = [];
    section.onCount = count => counts.push(count);
    await section.refresh();
    const card = section.node.querySelector('[data-testid="mlopshub-approval"]')!;
    expect(card.querySelector('[data-fact="publisher"]')!.textContent).toBe('sam');
    expect(card.querySelector('[data-fact="hold-out"]')!.textContent).toBe('auc 0.8100');
    (card.querySelector('[data-testid="mlopshub-review"]') as HTMLButtonElement).click();
    expect(views.openReview).toHaveBeenCalledWith('rel-abc');
    expect(counts).toEqual([1]);
    section.dispose();
  });

  it('drops a release decided elsewhere when told one changed, without Refresh', async () => {
    (requestAPI as jest.Mock).mockResolvedValue({ releases: [awaiting] });
    const section = new ApprovalsSection(views);
    await section.refresh();
    expect(section.node.querySelectorAll('[data-testid="mlopshub-approval"]')).toHaveLength(1);
    (requestAPI as jest.Mock).mockResolvedValue({ releases: [] });
    releaseChanged.emit({ ...awaiting, state: 'rejected' });
    await tick();
    expect(section.node.querySelectorAll('[data-testid="mlopshub-approval"]')).toHaveLength(0);
    expect(section.node.textContent).toContain('Nothing awaits approval.');
    section.dispose();
  });
});

describe('the release page', () => {
  it("shows anyone who may read the release its audit trail, asking the pipeline for that release's entries only", async () => {
    const registered = { id: 7, at: '2026-12-01T09:00:00+00:00', actor: 'sam', action: 'registered', release_id: 'rel-abc', model: 'loans', version: '3', reason: '', details: {}, chain: '' };
    (requestAPI as jest.Mock).mockReset();
    (requestAPI as jest.Mock).mockImplementation(async (endpoint: string) => (endpoint === 'audit' ? { entries: [registered] } : awaiting));
    const release = new ReleasePage('rel-abc', 'release');
    await tick();
    await tick();
    expect(requestAPI).toHaveBeenCalledWith('audit', {}, { release_id: 'rel-abc' });
    const entry = release.node.querySelector('[data-testid="mlopshub-page-audit"] li[data-action="registered"]')!;
    expect(entry.textContent).toContain('registered by sam');
    release.dispose();
  });
});

describe('the review page', () => {
  async function page() {
    (requestAPI as jest.Mock).mockImplementation(async (endpoint: string) => (endpoint === 'audit' ? { entries: [] } : awaiting));
    const review = new ReleasePage('rel-abc', 'review');
    await tick();
    await tick();
    return review;
  }

  it('lays out the hold-out metrics against the thresholds and the staging example', async () => {
    const review = await page();
    const row = review.node.querySelector('[data-testid="mlopshub-evidence"] tr[data-metric="auc"]')!;
    expect(row.getAttribute('data-met')).toBe('true');
    expect(row.textContent).toContain('≥ 0.75');
    expect(review.node.querySelector('[data-testid="mlopshub-example-request"]')!.textContent).toContain('"columns":["amount","income"]');
    review.dispose();
  });

  it('requires a comment, asks for confirmation, and shows the pipeline refusal as it says it', async () => {
    const review = await page();
    (post as jest.Mock).mockClear();
    const approve = review.node.querySelector('[data-testid="mlopshub-approve"]') as HTMLButtonElement;
    approve.click();
    await tick();
    expect(post).not.toHaveBeenCalled();
    expect(review.node.querySelector('[data-testid="mlopshub-error"]')!.textContent).toContain('Say what you checked');

    (review.node.querySelector('[data-testid="mlopshub-decision-comment"]') as HTMLTextAreaElement).value = 'AUC and lineage checked';
    (showDialog as jest.Mock).mockResolvedValue({ button: { accept: false } });
    approve.click();
    await tick();
    expect(post).not.toHaveBeenCalled();

    const message = "'sam' cannot approve release 'rel-abc': it was published by 'sam'";
    (showDialog as jest.Mock).mockResolvedValue({ button: { accept: true } });
    (post as jest.Mock).mockRejectedValue(new Error(message));
    approve.click();
    await tick();
    await tick();
    expect(post).toHaveBeenCalledWith('releases/rel-abc/approve', { comment: 'AUC and lineage checked' });
    expect(review.node.querySelector('[data-testid="mlopshub-decision-status"]')!.textContent).toBe(message);
    review.dispose();
  });
});

describe('the Experiments section', () => {
  const { ExperimentsSection } = jest.requireActual<typeof import('../experiments')>('../experiments');
  const run = (id: string) => ({ run_id: id, run_name: id, status: 'FINISHED', start_time: 1, end_time: 2, duration_ms: 1, metrics: { auc: 0.8 }, params: {}, lineage: {} });

  it('keeps the ticked runs through a reload and opens them side by side in a tab', async () => {
    (requestAPI as jest.Mock).mockImplementation(async (endpoint: string) =>
      endpoint === 'experiments/workspaces'
        ? { workspaces: ['sme-credit'], current: 'sme-credit' }
        : endpoint === 'experiments/list'
          ? { experiments: [{ id: '1', name: 'credit', last_update_time: 1 }] }
          : { runs: [run('a'), run('b')], next_page_token: null }
    );
    const section = new ExperimentsSection(views);
    await section.refresh('credit');
    for (const id of ['a', 'b']) {
      const box = section.node.querySelector(`tr.mlopshub-run[data-run="${id}"] input`) as HTMLInputElement;
      box.checked = true;
      box.dispatchEvent(new Event('change'));
    }
    await section.refresh('credit');
    const compare = section.node.querySelector('#mlopshub-compare-runs') as HTMLButtonElement;
    expect(compare.disabled).toBe(false);
    compare.click();
    expect(views.openCompare).toHaveBeenCalledWith('sme-credit', ['a', 'b']);
  });
});
