/**
 * Small DOM builders shared by the sidebar's sections.
 *
 * Kept rather than taken from a library: the sections build plain elements and attach their own
 * listeners, and these two functions are all that takes. React (through JupyterLab's ReactWidget) or
 * @lumino/virtualdom would render each view from state instead: a rewrite of every section that no user
 * would see, and one more dependency to declare and keep in step with JupyterLab's.
 */

type Child = Node | string | null | undefined | false;

export function h(
  tag: string,
  attributes: Record<string, string | boolean | undefined> = {},
  ...children: Child[]
): HTMLElement {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === false) {
      continue;
    }
    if (name === 'class') {
      element.className = String(value);
    } else {
      element.setAttribute(name, value === true ? '' : value);
    }
  }
  for (const child of children) {
    if (child !== null && child !== undefined && child !== false) {
      element.append(child);
    }
  }
  return element;
}

export function button(label: string, onClick: () => void, attributes: Record<string, string | boolean | undefined> = {}): HTMLButtonElement {
  const element = h('button', { class: 'jp-Button mlopshub-button', type: 'button', ...attributes }, label) as HTMLButtonElement;
  element.addEventListener('click', onClick);
  return element;
}
