jest.mock('../request', () => ({
  requestAPI: jest.fn(),
  post: jest.fn()
}));

import { post, requestAPI } from '../request';

// jsdom has no DragEvent, which Lumino's drag-and-drop module extends when it loads.
(globalThis as any).DragEvent ??= class DragEvent extends Event {};
const { ApprovalsSection } = jest.requireActual<typeof import('../models')>('../models');

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
  state: 'awaiting_approval',
  steps: [],
  gate_results: [{ name: 'metrics', passed: true, reason: 'auc 0.81 >= min 0.75', details: { metrics: { auc: 0.81 } } }],
  endpoints: { staging: 'http://h/services/models/loans/staging/invocations' },
  approver: null,
  comment: '',
  reason: '',
  created: '',
  updated: ''
};

describe('the Approvals view', () => {
  it('shows Approve on every awaiting release and the pipeline refusal as it says it', async () => {
    (requestAPI as jest.Mock).mockResolvedValue({ releases: [awaiting] });
    const message = "'sam' cannot approve release 'rel-abc': it was published by 'sam'";
    (post as jest.Mock).mockRejectedValue(new Error(message));
    const section = new ApprovalsSection();
    await section.refresh();
    const card = section.node.querySelector('[data-testid="mlopshub-approval"]')!;
    expect(card.querySelector('[data-fact="publisher"]')!.textContent).toBe('sam');
    expect(card.querySelector('[data-fact="auc"]')!.textContent).toBe('0.8100');
    expect(card.querySelector('[data-testid="mlopshub-example-request"]')!.textContent).toContain('staging/invocations');
    (card.querySelector('[data-testid="mlopshub-approve"]') as HTMLButtonElement).click();
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(post).toHaveBeenCalledWith('releases/rel-abc/approve', { comment: '' });
    expect(card.querySelector('[data-testid="mlopshub-error"]')!.textContent).toBe(message);
  });

  it('asks for a reason before rejecting', async () => {
    (requestAPI as jest.Mock).mockResolvedValue({ releases: [awaiting] });
    (post as jest.Mock).mockClear();
    const section = new ApprovalsSection();
    await section.refresh();
    (section.node.querySelector('[data-testid="mlopshub-reject"]') as HTMLButtonElement).click();
    expect(post).not.toHaveBeenCalled();
    expect(section.node.querySelector('[data-testid="mlopshub-error"]')!.textContent).toContain('Say why');
  });
});
