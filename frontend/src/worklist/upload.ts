// Upload DICOM files, a folder or zips. Plain files go to the server in batches, one request each, so the slices of
// a study arrive together and are analysed once (the server queues one analysis per study and request); every file
// still shows its own progress (its share of the bytes sent) and its own result or error. A zip goes alone: the
// server unpacks it in a background job, whose progress the worklist shows.

import { upload, type UploadResult } from '../api';
import { el } from '../ui/toast';

const BATCH_BYTES = 128 * 1024 * 1024;
const BATCH_FILES = 500;

interface Entry { file: File; li: HTMLLIElement }

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
    const entries = files.map((file) => ({ file, li: list.appendChild(fileItem(file)) }));
    for (const batch of batches(entries)) {
      await send(batch);
      onDone(); // the worklist shows what landed so far
    }
  });
}

function isZip(file: File): boolean {
  return /\.zip$/i.test(file.name) || file.type === 'application/zip' || file.type === 'application/x-zip-compressed';
}

/** Zips one by one; plain files in batches of at most BATCH_FILES files and BATCH_BYTES bytes. */
function batches(entries: Entry[]): Entry[][] {
  const out: Entry[][] = [];
  let current: Entry[] = [];
  let bytes = 0;
  for (const entry of entries) {
    if (isZip(entry.file)) { out.push([entry]); continue; }
    if (current.length && (current.length >= BATCH_FILES || bytes + entry.file.size > BATCH_BYTES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(entry);
    bytes += entry.file.size;
  }
  if (current.length) out.push(current);
  return out;
}

function fileItem(file: File): HTMLLIElement {
  const li = el('li', 'upload-item');
  li.dataset.state = 'waiting';
  const bar = el('progress');
  bar.max = 1;
  bar.value = 0;
  li.append(el('span', 'name', file.name), bar, el('span', 'result muted', 'waiting'));
  return li;
}

function setState(li: HTMLLIElement, state: 'uploading' | 'done' | 'error', text: string): void {
  li.dataset.state = state;
  li.classList.toggle('is-ok', state === 'done');
  li.classList.toggle('is-error', state === 'error');
  li.querySelector('.result')!.textContent = text;
}

async function send(batch: Entry[]): Promise<void> {
  const sizes = batch.map((e) => Math.max(1, e.file.size));
  const sum = sizes.reduce((a, b) => a + b, 0);
  const bars = batch.map((e) => e.li.querySelector('progress')!);
  batch.forEach((e) => setState(e.li, 'uploading', 'uploading'));
  try {
    const { results, jobs } = await upload(batch.map((e) => e.file), (loaded, total) => {
      // The multipart body holds the files in order: a file is sent once the bytes up to its end are.
      const sent = total ? (loaded / total) * sum : 0;
      let start = 0;
      batch.forEach((_, i) => {
        bars[i].value = Math.max(0, Math.min(1, (sent - start) / sizes[i]));
        start += sizes[i];
      });
    });
    bars.forEach((bar) => { bar.value = 1; });
    const matched = matchResults(batch, results);
    batch.forEach((e, i) => {
      const r = matched[i];
      if (r) showResult(e.li, r);
      else if (jobs?.length) setState(e.li, 'done', 'archive queued: unpacking on the server');
      else setState(e.li, 'error', 'no result from the server');
    });
  } catch (err) {
    batch.forEach((e) => setState(e.li, 'error', (err as Error).message));
  }
}

/** The server answers in the order it received the files (zips aside); by name when the counts differ. */
function matchResults(batch: Entry[], results: UploadResult[]): (UploadResult | undefined)[] {
  if (results.length === batch.length) return results;
  const byName = new Map<string, UploadResult[]>();
  for (const r of results) byName.set(r.name, [...(byName.get(r.name) ?? []), r]);
  return batch.map((e) => byName.get(e.file.name)?.shift());
}

function showResult(li: HTMLLIElement, r: UploadResult): void {
  const bad = r.status === 'rejected' || r.status === 'conflict';
  setState(li, bad ? 'error' : 'done', bad ? `${r.status}: ${r.reason}` : r.status === 'duplicate' ? 'already stored' : r.status);
}
