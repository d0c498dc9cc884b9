/** The sidebar as an index: which sections a user's roles use, and sections that collapse and carry a badge. */

import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { IMe } from './release';

export type SectionName = 'data' | 'experiments' | 'models' | 'approvals' | 'audit';

/**
 * The sections a user's roles use: team members get Data, Experiments and
 * Models; validators Approvals; validators and platform admins the Audit log.
 * Without an answer from the hub (`me` is null) every team section shows, as
 * before roles were known: they say themselves what is missing.
 */
export function sectionsFor(me: IMe | null): SectionName[] {
  if (!me) {
    return ['data', 'experiments', 'models'];
  }
  const names: SectionName[] = me.publish_teams.length ? ['data', 'experiments', 'models'] : [];
  if (me.validator) {
    names.push('approvals');
  }
  if (me.auditor) {
    names.push('audit');
  }
  return names;
}

/** The text of a badge: nothing for zero, "99+" beyond. */
export function badgeText(count: number): string {
  return count <= 0 ? '' : count > 99 ? '99+' : String(count);
}

/**
 * Turn a section's `h3` into a header that collapses the section (a click or
 * Enter/Space), with a badge of what needs attention. `onToggle` is told the
 * new state, to remember it.
 */
export class Collapsible {
  private _badge: HTMLElement;
  private _header: HTMLElement;

  constructor(
    private readonly _section: Widget,
    collapsed: boolean,
    private readonly _onToggle: (collapsed: boolean) => void
  ) {
    const title = _section.node.querySelector('h3')!;
    this._badge = h('span', { class: 'mlopshub-badge', 'data-testid': 'mlopshub-badge', hidden: true });
    this._header = h('h3', { class: 'mlopshub-section-header', role: 'button', tabindex: '0', 'data-testid': 'mlopshub-section-header', 'data-section': _section.id }, h('span', { class: 'mlopshub-caret' }), title.textContent ?? '', this._badge);
    title.replaceWith(this._header);
    this._header.addEventListener('click', () => this.toggle());
    this._header.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        this.toggle();
      }
    });
    this._set(collapsed);
  }

  get collapsed(): boolean {
    return this._section.hasClass('mlopshub-collapsed');
  }

  toggle(): void {
    this._set(!this.collapsed);
    this._onToggle(this.collapsed);
  }

  /** Show `count` things needing attention (hidden at zero); `label` says what they are. */
  badge(count: number, label: string): void {
    this._badge.textContent = badgeText(count);
    this._badge.hidden = count <= 0;
    this._badge.title = `${count} ${label}`;
    this._badge.setAttribute('aria-label', `${count} ${label}`);
  }

  private _set(collapsed: boolean): void {
    this._section.toggleClass('mlopshub-collapsed', collapsed);
    this._header.setAttribute('aria-expanded', String(!collapsed));
  }
}
