/** DOM parts shared by the sidebar's sections and the main-area tabs: errors, gates, endpoints. */

import { Clipboard } from '@jupyterlab/apputils';
import { IPoll, Poll } from '@lumino/polling';
import { Signal } from '@lumino/signaling';

import { button, h } from './dom';
import { exampleRequest, IRelease } from './release';

/**
 * Emitted with a release after someone acted on it in this Lab (approve,
 * reject, publish, roll back): lists showing it look again at once instead of
 * at their next poll.
 */
export const releaseChanged = new Signal<object, IRelease | null>({});

/**
 * Whether `node` is out of sight inside the Lab: not in the page, or in a tab or
 * sidebar panel that is hidden (a hidden element, or one inside a hidden one, has no offsetParent).
 */
export function outOfSight(node: HTMLElement): boolean {
  return !node.isConnected || node.offsetParent === null;
}

/**
 * A poll's pace when it looks every `interval` ms: after a failed look it waits
 * up to three times longer each time (Lumino's back-off, at most a minute) until
 * the pipeline answers, then keeps `interval` again.
 */
export function pace(interval: number): IPoll.Frequency {
  return { interval, backoff: true, max: 60_000 };
}

/**
 * A poll that looks at the `pace` of `interval` ms. It stands by while `node`
 * is out of sight in the Lab, and while the browser tab is hidden through
 * Lumino's own 'when-hidden' (with no lingering look, as before).
 */
export function pollFor(node: HTMLElement, interval: number, factory: () => Promise<void>): Poll {
  return new Poll({
    auto: true,
    factory,
    frequency: pace(interval),
    linger: 0,
    standby: () => outOfSight(node) || 'when-hidden'
  });
}

export function errorBox(message: string): HTMLElement {
  return h('p', { class: 'mlopshub-error', 'data-testid': 'mlopshub-error', role: 'alert' }, message);
}

export function messageOf(error: unknown): string {
  return (error as Error).message || String(error);
}

/** A label with its input, for the small forms. */
export function labelled(text: string, input: HTMLElement): HTMLElement {
  return h('label', { class: 'mlopshub-field' }, h('span', {}, text), input);
}

/** The gate results of a release: passed or failed, the reason, and for a failure the fix. */
export function gateList(release: IRelease): HTMLElement {
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

/** An endpoint address with a ready-to-copy example request built from the model's signature. */
export function endpointBlock(stage: string, url: string, columns: string[] | null): HTMLElement {
  const example = exampleRequest(url, columns);
  // JupyterLab's clipboard also works where navigator.clipboard is missing: a hub served over plain HTTP.
  const copy = button('Copy', () => Clipboard.copyToSystem(example), { 'data-testid': 'mlopshub-copy-example' });
  return h(
    'div',
    { class: 'mlopshub-endpoint', 'data-stage': stage },
    h('div', {}, `${stage} endpoint: `, h('code', { class: 'mlopshub-endpoint-url' }, url)),
    h('pre', { class: 'mlopshub-example-request', 'data-testid': 'mlopshub-example-request', 'data-stage': stage }, example),
    copy
  );
}

/** A two-column list of facts (name, value), each value findable by `data-fact`. */
export function facts(rows: [string, string][]): HTMLElement {
  return h('dl', { class: 'mlopshub-facts' }, ...rows.flatMap(([key, value]) => [h('dt', {}, key), h('dd', { 'data-fact': key }, value)]));
}
