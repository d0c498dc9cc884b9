/**
 * How the sidebar's release view and the release page follow a release with
 * Lumino's Poll: the pace, the end, the back-off after a failure, standing by
 * while out of sight, and Copy through JupyterLab's clipboard. Time is jest's
 * fake clock; the server extension is a fake `fetch` behind the real requestAPI.
 */

jest.mock('@jupyterlab/apputils', () => ({
  Clipboard: { copyToSystem: jest.fn() },
  showDialog: jest.fn(),
  Dialog: { cancelButton: () => ({ accept: false }), okButton: () => ({ accept: true }), warnButton: () => ({ accept: true }) }
}));

import { Clipboard } from '@jupyterlab/apputils';

import { installFetch } from './browser';

// jsdom has no DragEvent, which Lumino's drag-and-drop module extends when it loads.
(globalThis as any).DragEvent ??= class DragEvent extends Event {};
const { Widget } = jest.requireActual<typeof import('@lumino/widgets')>('@lumino/widgets');
const { ReleaseView } = jest.requireActual<typeof import('../models')>('../models');
const { ReleasePage } = jest.requireActual<typeof import('../releasepage')>('../releasepage');
const { releaseChanged } = jest.requireActual<typeof import('../parts')>('../parts');

type ReleaseState = import('../release').ReleaseState;

const STAGING = 'http://hub/services/models/loans/staging/invocations';

function release(state: ReleaseState) {
  return {
    id: 'rel-1',
    model_name: 'loans',
    version: '3',
    model_uri: 'runs:/r1/model',
    run_id: 'r1',
    team: 'sme-credit',
    kind: 'online',
    description: '',
    publisher: 'sam',
    state,
    steps: [],
    gate_results: [{ name: 'signature_and_example', passed: true, reason: 'ok', details: { signature: { inputs: '[{"name": "amount"}, {"name": "income"}]' } } }],
    endpoints: { staging: STAGING },
    approver: null,
    comment: '',
    reason: '',
    created: '2026-12-01T09:00:00+00:00',
    updated: ''
  };
}

/**
 * The server extension: answers `releases/rel-1` with the next of `answers` (the last one
 * again once they run out), an empty audit trail, and counts the looks at the release.
 */
class FakeServer {
  looks = 0;
  private _answers: { status: number; body: unknown }[] = [];

  answer(...answers: ({ status: number; body: unknown } | ReleaseState)[]): void {
    this._answers = answers.map(item => (typeof item === 'string' ? { status: 200, body: release(item) } : item));
  }

  async fetch(request: { url: string }): Promise<unknown> {
    const path = new URL(request.url).pathname;
    let answer = { status: 200, body: { entries: [] } as unknown };
    if (path.endsWith('/mlopshub-lab/releases/rel-1')) {
      this.looks += 1;
      answer = this._answers.length > 1 ? this._answers.shift()! : this._answers[0];
    }
    const text = JSON.stringify(answer.body);
    return { ok: answer.status < 400, status: answer.status, statusText: String(answer.status), text: async () => text };
  }
}

const server = new FakeServer();
const down = { status: 503, body: { message: 'the pipeline did not answer: connection refused' } };

beforeAll(() => installFetch(request => server.fetch(request)));

beforeEach(() => {
  jest.useFakeTimers();
  server.looks = 0;
  document.body.replaceChildren();
});

afterEach(() => {
  jest.useRealTimers();
  jest.restoreAllMocks();
});

/** jsdom lays nothing out, so no element has an offsetParent: show `node` as a browser does once it is on screen. */
function onScreen(node: HTMLElement): void {
  if (!node.isConnected) {
    document.body.append(node);
  }
  Object.defineProperty(node, 'offsetParent', { configurable: true, get: () => document.body });
}

/** Hide or show the browser tab, as the browser tells the page. */
function browserTab(visibility: 'hidden' | 'visible'): void {
  Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => visibility });
  document.dispatchEvent(new Event('visibilitychange'));
}

const wait = (ms: number) => jest.advanceTimersByTimeAsync(ms);
/** The first look: the poll starts on the next turn of the event loop (a timer of 0, which runs after 1 ms). */
const started = () => wait(1);

describe('the release view in the sidebar', () => {
  it('looks every 1.5 s while the release moves and stops for good once it is in production', async () => {
    server.answer('gating', 'staging', 'production');
    const changed: string[] = [];
    const listener = (_: object, changedRelease: { state: string } | null) => changed.push(changedRelease!.state);
    releaseChanged.connect(listener);
    const view = new ReleaseView(release('registered'));
    onScreen(view.node);

    await started();
    expect(server.looks).toBe(1);
    expect(view.node.getAttribute('data-state')).toBe('gating');
    await wait(1500);
    expect(server.looks).toBe(2);
    expect(view.node.getAttribute('data-state')).toBe('staging');
    await wait(1500);
    expect(server.looks).toBe(3);
    expect(view.node.querySelector('[data-testid="mlopshub-release-state"]')!.textContent).toBe('in production');
    expect(changed).toEqual(['production']);

    await wait(10 * 60_000);
    expect(server.looks).toBe(3);
    expect(jest.getTimerCount()).toBe(0);
    releaseChanged.disconnect(listener);
  });

  it('never looks at a release that has already ended', async () => {
    server.answer('gates_failed');
    const view = new ReleaseView(release('gates_failed'));
    onScreen(view.node);
    await wait(10 * 60_000);
    expect(server.looks).toBe(0);
    expect(view.node.getAttribute('data-state')).toBe('gates_failed');
  });

  it('stops looking once the sidebar drops it', async () => {
    server.answer('gating');
    const view = new ReleaseView(release('registered'));
    onScreen(view.node);
    await started();
    await wait(1500);
    expect(server.looks).toBe(2);
    view.dispose();
    await wait(10 * 60_000);
    expect(server.looks).toBe(2);
    expect(jest.getTimerCount()).toBe(0); // the poll is gone, not standing by
  });

  it('backs off after failed looks, shows why, and keeps its pace again once the pipeline answers', async () => {
    // The back-off draws its wait at random up to three times the last one: take the top of the range.
    jest.spyOn(Math, 'random').mockReturnValue(0.999);
    server.answer('gating', down, down, 'staging');
    const view = new ReleaseView(release('registered'));
    onScreen(view.node);
    await started();
    await wait(1500);
    expect(server.looks).toBe(2);
    expect(view.node.querySelector('[data-testid="mlopshub-error"]')!.textContent).toBe('the pipeline did not answer: connection refused');
    expect(view.node.getAttribute('data-state')).toBe('gating');

    // At its pace it would have looked twice more by now.
    await wait(3000);
    expect(server.looks).toBe(2);
    await wait(1500);
    expect(server.looks).toBe(3);

    // A second failure: longer still.
    await wait(9000);
    expect(server.looks).toBe(3);
    await wait(4500);
    expect(server.looks).toBe(4);
    expect(view.node.getAttribute('data-state')).toBe('staging');
    expect(view.node.querySelector('[data-testid="mlopshub-error"]')).toBeNull();

    await wait(1500);
    expect(server.looks).toBe(5);
    view.dispose();
  });

  it('stands by while it is out of sight in the Lab or the browser tab is hidden', async () => {
    server.answer('gating');
    const view = new ReleaseView(release('registered'));
    await wait(60_000);
    expect(server.looks).toBe(0);

    onScreen(view.node);
    await wait(1500);
    expect(server.looks).toBe(1);

    browserTab('hidden');
    await wait(60_000);
    expect(server.looks).toBe(1);
    browserTab('visible');
    await wait(1500);
    expect(server.looks).toBe(2);
    view.dispose();
  });
});

describe('the release page', () => {
  function open(): InstanceType<typeof ReleasePage> {
    const page = new ReleasePage('rel-1', 'release');
    Widget.attach(page, document.body);
    onScreen(page.node);
    return page;
  }

  it('stops looking once the release has ended', async () => {
    server.answer('awaiting_approval', 'rejected');
    const page = open();
    await wait(5000);
    expect(page.node.getAttribute('data-state')).toBe('rejected');
    const looks = server.looks;
    await wait(10 * 60_000);
    expect(server.looks).toBe(looks);
    expect(jest.getTimerCount()).toBe(0);
    page.dispose();
  });

  it('looks now and then at a release in production, which a roll back still changes', async () => {
    server.answer('production');
    const page = open();
    await started();
    const first = server.looks;
    await wait(29_000);
    expect(server.looks).toBe(first);
    await wait(1000);
    expect(server.looks).toBe(first + 1);
    server.answer('rolled_back');
    await wait(30_000);
    expect(server.looks).toBe(first + 2);
    expect(page.node.getAttribute('data-state')).toBe('rolled_back');
    await wait(10 * 60_000);
    expect(server.looks).toBe(first + 2);
    page.dispose();
  });

  it('stops looking when its tab is closed', async () => {
    server.answer('gating');
    const page = open();
    await wait(1500);
    const looks = server.looks;
    expect(looks).toBeGreaterThan(0);
    page.dispose();
    await wait(10 * 60_000);
    expect(server.looks).toBe(looks);
    expect(jest.getTimerCount()).toBe(0); // the poll is gone, not standing by
  });
});

describe('the example request', () => {
  it('Copy puts the example request, exactly as shown, on the clipboard through JupyterLab', async () => {
    const view = new ReleaseView(release('awaiting_approval'));
    const expected = [
      `curl -X POST '${STAGING}' \\`,
      '  -H "Authorization: token $JUPYTERHUB_API_TOKEN" \\',
      "  -H 'Content-Type: application/json' \\",
      `  -d '{"dataframe_split":{"columns":["amount","income"],"data":[[0,0]]}}'`
    ].join('\n');
    expect(view.node.querySelector('[data-testid="mlopshub-example-request"]')!.textContent).toBe(expected);
    (view.node.querySelector('[data-testid="mlopshub-copy-example"]') as HTMLButtonElement).click();
    expect(Clipboard.copyToSystem).toHaveBeenCalledTimes(1);
    expect(Clipboard.copyToSystem).toHaveBeenCalledWith(expected);
    view.dispose();
  });
});
