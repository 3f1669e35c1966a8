// Transient messages in the corner: saves, conflicts, errors. Each stays a few seconds, errors longer.

type Kind = 'info' | 'success' | 'warning' | 'error';

let host: HTMLElement | null = null;

export function toast(message: string, kind: Kind = 'info', ms = kind === 'error' || kind === 'warning' ? 8000 : 3000): void {
  host ??= document.body.appendChild(el('div', 'toasts'));
  const item = host.appendChild(el('div', `toast toast-${kind}`, message));
  item.setAttribute('role', kind === 'error' || kind === 'warning' ? 'alert' : 'status');
  item.addEventListener('click', () => item.remove());
  setTimeout(() => item.remove(), ms);
}

export function el<K extends keyof HTMLElementTagNameMap>(tag: K, className = '', text = ''): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text) node.textContent = text;
  return node;
}
