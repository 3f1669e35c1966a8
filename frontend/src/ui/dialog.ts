// Modal dialogs: the help and the confirmation of a diagnosis. A <dialog> opened with showModal() makes the page
// behind it inert and closes on Escape; on top of that Tab and Shift+Tab cycle through the dialog's own controls
// (the browser would otherwise let focus leave for its own toolbar), and focus returns where it was on close.

import { el } from './toast';

const FOCUSABLE = 'button:not([disabled]), [href], input:not([disabled]), select:not([disabled]), textarea:not([disabled]), [tabindex]:not([tabindex="-1"])';

export class ModalDialog {
  readonly element: HTMLDialogElement;
  readonly body: HTMLElement;
  private returnTo: HTMLElement | null = null;

  constructor(title: string, className: string, element: HTMLDialogElement = el('dialog')) {
    this.element = element;
    element.classList.add('modal', ...className.split(' ').filter(Boolean));
    const heading = el('h2', '', title);
    heading.id = `${className.split(' ')[0] || 'modal'}-title`;
    element.setAttribute('aria-labelledby', heading.id);
    this.body = el('div', 'modal-body');
    element.replaceChildren(heading, this.body);
    if (!element.isConnected) document.body.appendChild(element);
    element.addEventListener('keydown', (e) => this.trapTab(e));
    element.addEventListener('close', () => { this.returnTo?.focus(); this.returnTo = null; });
    // A click on the backdrop (the dialog element itself, outside its content box) closes it.
    element.addEventListener('click', (e) => { if (e.target === element) this.close(); });
  }

  get isOpen(): boolean { return this.element.open; }

  open(focus?: HTMLElement | null): void {
    if (this.element.open) return;
    this.returnTo = document.activeElement instanceof HTMLElement ? document.activeElement : null;
    this.element.showModal();
    (focus ?? this.focusables()[0])?.focus();
  }

  close(): void {
    if (this.element.open) this.element.close();
  }

  private focusables(): HTMLElement[] {
    return [...this.element.querySelectorAll<HTMLElement>(FOCUSABLE)].filter((n) => !n.closest('[hidden]'));
  }

  private trapTab(e: KeyboardEvent): void {
    if (e.key !== 'Tab') return;
    const items = this.focusables();
    if (!items.length) { e.preventDefault(); return; }
    const first = items[0];
    const last = items[items.length - 1];
    const active = document.activeElement;
    const inside = active instanceof HTMLElement && this.element.contains(active);
    if (e.shiftKey && (active === first || !inside)) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && (active === last || !inside)) { e.preventDefault(); first.focus(); }
  }
}

/** Ask before an action that matters: resolves true only when the user presses the confirm button (focused, as in
 * the browser's own confirm(): Enter confirms, Escape or Cancel does not). */
export function confirmAction(title: string, message: string, confirmText: string): Promise<boolean> {
  const dialog = new ModalDialog(title, 'confirm-dialog');
  dialog.body.appendChild(el('p', '', message));
  const actions = dialog.body.appendChild(el('div', 'modal-actions'));
  const cancel = actions.appendChild(el('button', '', 'Cancel'));
  const confirm = actions.appendChild(el('button', 'primary', confirmText));
  cancel.type = confirm.type = 'button';
  cancel.dataset.action = 'cancel';
  confirm.dataset.action = 'confirm';
  return new Promise((resolve) => {
    let confirmed = false;
    confirm.addEventListener('click', () => { confirmed = true; dialog.close(); });
    cancel.addEventListener('click', () => dialog.close());
    dialog.element.addEventListener('close', () => { dialog.element.remove(); resolve(confirmed); });
    dialog.open(confirm);
  });
}
