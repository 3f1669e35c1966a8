// Keyboard shortcuts: one table drives both the key handling and the help dialog (`?` or the toolbar's button).
// Single-character shortcuts (letters, digits, `?`) can be switched off in the help dialog, as WCAG 2.1.4 asks of
// them (speech input types such characters, and a stray key must not act); the choice is kept in this browser.
// Navigation keys (arrows, Page Up/Down, Home/End, Delete, Escape) and modifier chords stay on.

import { ModalDialog } from '../ui/dialog';
import { el } from '../ui/toast';

export interface Shortcut { keys: string[]; help: string; run: (e: KeyboardEvent) => void }

const STORAGE_KEY = 'lungscope.single-key-shortcuts';

/** A printable character (what WCAG calls a character key shortcut), as opposed to a named key or a chord. */
export function isCharacterKey(key: string): boolean {
  return [...key].length === 1;
}

export function singleKeyShortcutsOn(): boolean {
  try {
    return localStorage.getItem(STORAGE_KEY) !== 'off';
  } catch {
    return true; // storage blocked: the default
  }
}

function setSingleKeyShortcuts(on: boolean): void {
  try {
    localStorage.setItem(STORAGE_KEY, on ? 'on' : 'off');
  } catch {
    // storage blocked: the choice holds for this page only
  }
}

export function bindShortcuts(shortcuts: Shortcut[], host: HTMLDialogElement, button: HTMLElement): ModalDialog {
  const byKey = new Map<string, Shortcut>();
  for (const s of shortcuts) for (const k of s.keys) byKey.set(k, s);
  let characterKeys = singleKeyShortcutsOn();
  const help = new ModalDialog('Keyboard shortcuts', 'help-dialog', host);
  const render = () => renderHelp(help, shortcuts, characterKeys, (on) => {
    characterKeys = on;
    setSingleKeyShortcuts(on);
    render();
    help.body.querySelector<HTMLInputElement>('input[name=single-key-shortcuts]')?.focus();
  });
  render();
  button.addEventListener('click', () => help.open());
  window.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const target = e.target as HTMLElement;
    if (document.querySelector('dialog[open]')) {
      if (help.isOpen && e.key === '?' && characterKeys) { help.close(); e.preventDefault(); }
      return; // a modal dialog owns the keyboard
    }
    if (target.closest('input, textarea, select, [contenteditable]')) return;
    if (isCharacterKey(e.key) && !characterKeys) return;
    if (e.key === '?') { help.open(); e.preventDefault(); return; }
    const shortcut = byKey.get(e.shiftKey && !isCharacterKey(e.key) ? `Shift+${e.key}` : e.key);
    if (!shortcut) return;
    e.preventDefault();
    shortcut.run(e);
  });
  return help;
}

function renderHelp(help: ModalDialog, shortcuts: Shortcut[], characterKeys: boolean, onToggle: (on: boolean) => void): void {
  const setting = el('label', 'setting');
  const box = setting.appendChild(el('input'));
  Object.assign(box, { type: 'checkbox', name: 'single-key-shortcuts', checked: characterKeys });
  box.addEventListener('change', () => onToggle(box.checked));
  setting.append(' Single-key shortcuts (letters, digits, ?)');
  const note = el('p', 'muted small', characterKeys
    ? 'Switch them off if you use speech input or type by accident; arrows, Page Up/Down, Home/End, Delete and Escape stay on.'
    : 'Off in this browser: only the keys that are not characters work.');
  const table = el('table');
  for (const s of [...shortcuts, { keys: ['?'], help: 'Show or hide this help' }]) {
    const tr = table.appendChild(el('tr'));
    const off = !characterKeys && s.keys.every(isCharacterKey);
    if (off) tr.className = 'off';
    const keys = tr.appendChild(el('td'));
    s.keys.forEach((k, i) => { if (i) keys.append(' '); keys.appendChild(el('kbd', '', k)); });
    tr.appendChild(el('td', '', s.help + (off ? ' (off)' : '')));
  }
  const close = el('button', '', 'Close');
  close.type = 'button';
  close.addEventListener('click', () => help.close());
  help.body.replaceChildren(setting, note, table, close);
}
