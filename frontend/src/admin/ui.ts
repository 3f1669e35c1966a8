// Building blocks of the admin pages (curation, registry): table cells, and actions whose outcome is shown in the
// section's status line (outside the tables, which polling redraws) and, when refused, in a toast as well: a refused
// promote, rollback, cancel or export is never silent.

import { el, toast } from '../ui/toast';

export function cell(row: HTMLTableRowElement, text: string | number | null | undefined = ''): HTMLTableCellElement {
  const td = row.insertCell();
  td.textContent = text == null ? '' : String(text);
  return td;
}

export function button(text: string, action: string): HTMLButtonElement {
  const b = el('button', '', text);
  b.type = 'button';
  b.dataset.action = action;
  return b;
}

/** Run ``fn`` for ``trigger`` (disabled meanwhile): success text or the error goes to ``out``; errors also toast.
 * Resolves true on success. */
export async function runAction(trigger: HTMLButtonElement, what: string, out: HTMLElement,
  fn: () => Promise<string>): Promise<boolean> {
  trigger.disabled = true;
  out.className = 'action-result muted';
  out.textContent = `${what}…`;
  try {
    out.textContent = await fn();
    out.className = 'action-result ok';
    return true;
  } catch (err) {
    const message = `${what} failed: ${(err as Error).message}`;
    out.className = 'action-result error';
    out.textContent = message;
    toast(message, 'error');
    return false;
  } finally {
    trigger.disabled = false;
  }
}

/** Show a failed page load in place of the table body, and toast it. */
export function loadFailed(body: HTMLTableSectionElement, what: string, err: unknown, columns: number): void {
  const message = `Could not load ${what}: ${(err as Error).message}`;
  const td = body.insertRow().insertCell();
  td.colSpan = columns;
  td.className = 'error';
  td.textContent = message;
  toast(message, 'error');
}

export function mib(bytes: number | null): string {
  return bytes ? `${(bytes / 1048576).toFixed(1)} MiB` : '';
}
