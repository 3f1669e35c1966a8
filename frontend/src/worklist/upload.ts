// Upload DICOM files or zips: one request per file so each shows its own progress and result.

import { upload, type UploadResult } from '../api';
import { el } from '../ui/toast';

const PARALLEL = 3;

export function bindUpload(button: HTMLButtonElement, panel: HTMLElement, onDone: () => void): void {
  const input = el('input');
  input.type = 'file';
  input.multiple = true;
  input.accept = '.dcm,.zip,application/dicom,application/zip,*';
  input.hidden = true;
  input.dataset.testid = 'upload-input';
  button.after(input);
  button.addEventListener('click', () => input.click());
  input.addEventListener('change', async () => {
    const files = [...(input.files ?? [])];
    input.value = '';
    if (!files.length) return;
    panel.hidden = false;
    const list = panel.querySelector('ul') ?? panel.appendChild(el('ul'));
    const items = files.map((f) => list.appendChild(fileItem(f)));
    let next = 0;
    const worker = async () => {
      while (next < files.length) {
        const i = next++;
        await send(files[i], items[i]);
      }
    };
    await Promise.all(Array.from({ length: Math.min(PARALLEL, files.length) }, worker));
    onDone();
  });
}

function fileItem(file: File): HTMLLIElement {
  const li = el('li', 'upload-item');
  li.append(el('span', 'name', file.name), el('progress'), el('span', 'result muted', 'waiting'));
  return li;
}

async function send(file: File, li: HTMLLIElement): Promise<void> {
  const bar = li.querySelector('progress')!;
  const result = li.querySelector('.result')!;
  bar.max = 1;
  result.textContent = 'uploading';
  try {
    const { results, jobs } = await upload([file], (loaded, total) => { bar.value = total ? loaded / total : 0; });
    bar.value = 1;
    if (jobs?.length) {
      li.classList.add('is-ok');
      result.textContent = 'archive queued: unpacking on the server';
    } else showResults(li, result, results);
  } catch (err) {
    li.classList.add('is-error');
    result.textContent = (err as Error).message;
  }
}

function showResults(li: HTMLElement, result: Element, results: UploadResult[]): void {
  const counts = new Map<string, number>();
  for (const r of results) counts.set(r.status, (counts.get(r.status) ?? 0) + 1);
  const bad = results.filter((r) => r.status === 'rejected' || r.status === 'conflict');
  li.classList.add(bad.length === results.length ? 'is-error' : 'is-ok');
  result.textContent = [...counts].map(([s, n]) => (results.length > 1 ? `${n} ${s}` : s)).join(', ')
    + (bad.length ? `: ${bad.map((r) => `${r.name} ${r.reason}`).join('; ')}` : '');
}
