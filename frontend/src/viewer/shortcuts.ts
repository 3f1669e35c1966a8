// Keyboard shortcuts: one table drives both the key handling and the `?` help overlay.

import { el } from '../ui/toast';

export interface Shortcut { keys: string[]; help: string; run: (e: KeyboardEvent) => void }

export function bindShortcuts(shortcuts: Shortcut[], overlay: HTMLElement): void {
  const byKey = new Map<string, Shortcut>();
  for (const s of shortcuts) for (const k of s.keys) byKey.set(k, s);
  renderHelp(overlay, shortcuts);
  const toggleHelp = (show = overlay.hidden) => { overlay.hidden = !show; };
  overlay.addEventListener('click', () => toggleHelp(false));
  window.addEventListener('keydown', (e) => {
    const target = e.target as HTMLElement;
    if (target.closest('input, textarea, select, [contenteditable]') || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.key === '?') { toggleHelp(); e.preventDefault(); return; }
    if (e.key === 'Escape' && !overlay.hidden) { toggleHelp(false); return; }
    const shortcut = byKey.get(e.shiftKey && e.key.length > 1 ? `Shift+${e.key}` : e.key);
    if (!shortcut) return;
    e.preventDefault();
    shortcut.run(e);
  });
}

function renderHelp(overlay: HTMLElement, shortcuts: Shortcut[]): void {
  const card = el('div', 'help-card');
  card.appendChild(el('h2', '', 'Keyboard shortcuts'));
  const table = card.appendChild(el('table'));
  for (const s of [...shortcuts, { keys: ['?'], help: 'Show or hide this help' }]) {
    const tr = table.appendChild(el('tr'));
    const keys = tr.appendChild(el('td'));
    s.keys.forEach((k, i) => { if (i) keys.append(' '); keys.appendChild(el('kbd', '', k)); });
    tr.appendChild(el('td', '', s.help));
  }
  overlay.replaceChildren(card);
}
