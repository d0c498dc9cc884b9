/** DOM parts shared by the sidebar's sections and the main-area tabs: errors, gates, endpoints. */

import { Poll } from '@lumino/polling';
import { Signal } from '@lumino/signaling';

import { button, h } from './dom';
import { exampleRequest, IRelease } from './release';

/**
 * Emitted with a release after someone acted on it in this Lab (approve,
 * reject, publish, roll back): lists showing it look again at once instead of
 * at their next poll.
 */
export const releaseChanged = new Signal<object, IRelease | null>({});

/** Whether `node` is out of sight (its tab or sidebar panel hidden, or the browser tab): polls stand by then. */
export function outOfSight(node: HTMLElement): boolean {
  return document.visibilityState === 'hidden' || !node.isConnected || node.offsetParent === null;
}

/** A poll that looks every `interval` ms, backs off on errors up to a minute, and stands by while `node` is out of sight. */
export function pollFor(node: HTMLElement, interval: number, factory: () => Promise<void>): Poll {
  return new Poll({ auto: true, factory, frequency: { interval, backoff: true, max: 60_000 }, standby: () => outOfSight(node) });
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
  const copy = button('Copy', () => void navigator.clipboard?.writeText(example), { 'data-testid': 'mlopshub-copy-example' });
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
