// Worklist page: filters, search, sort and pagination kept in the URL; live while studies are analysing.

import '../styles.css';
import { api, type Job, type Page, type StudyRow } from '../api';
import { toast } from '../ui/toast';
import { renderRows } from './table';
import { bindUpload } from './upload';

const PAGE_SIZE = 25;
const POLL_MS = 3000;
const FILTERS = ['status', 'ai_label', 'outside', 'reviewer', 'search', 'ordering'] as const;

const form = document.querySelector<HTMLFormElement>('#worklist-filters')!;
const body = document.querySelector<HTMLTableSectionElement>('#worklist-rows')!;
const pager = document.querySelector<HTMLElement>('#worklist-pager')!;
let offset = Number(new URLSearchParams(location.search).get('offset') ?? 0);
let pollTimer = 0;
let loading: AbortController | null = null;

function query(): URLSearchParams {
  const q = new URLSearchParams();
  const data = new FormData(form);
  for (const key of FILTERS) {
    const value = String(data.get(key) ?? '').trim();
    if (value) q.set(key, value);
  }
  q.set('limit', String(PAGE_SIZE));
  q.set('offset', String(offset));
  return q;
}

function restoreFilters(): void {
  const q = new URLSearchParams(location.search);
  for (const key of FILTERS) {
    const field = form.elements.namedItem(key) as HTMLInputElement | HTMLSelectElement | null;
    if (field && q.has(key)) field.value = q.get(key)!;
  }
}

async function load(): Promise<void> {
  loading?.abort();
  const mine = (loading = new AbortController());
  const q = query();
  history.replaceState(null, '', `?${new URLSearchParams([...q].filter(([k, v]) => k !== 'limit' && v !== '0'))}`);
  let page: Page<StudyRow>;
  try {
    page = await api.studies(q);
  } catch (err) {
    toast(`Could not load the worklist: ${(err as Error).message}`, 'error');
    return;
  }
  if (mine.signal.aborted) return;
  const busy = page.results.some((r) => r.status === 'analysing');
  const jobs = busy ? await runningJobs() : new Map<number, Job>();
  renderRows(body, page.results, jobs);
  renderPager(page.count);
  document.body.dataset.loaded = 'true';
  clearTimeout(pollTimer);
  if (busy) pollTimer = window.setTimeout(load, POLL_MS);
}

/** Running analysis jobs by the study they analyse. */
async function runningJobs(): Promise<Map<number, Job>> {
  try {
    const jobs = (await api.jobs()).results.filter((j) => j.params?.study_id != null && (j.status === 'running' || j.status === 'queued'));
    return new Map(jobs.map((j) => [j.params.study_id!, j]));
  } catch {
    return new Map();
  }
}

function renderPager(count: number): void {
  const first = count ? offset + 1 : 0;
  const last = Math.min(offset + PAGE_SIZE, count);
  pager.querySelector('.range')!.textContent = `${first}–${last} of ${count}`;
  pager.querySelector<HTMLButtonElement>('[data-page=prev]')!.disabled = offset <= 0;
  pager.querySelector<HTMLButtonElement>('[data-page=next]')!.disabled = last >= count;
}

function debounce(fn: () => void, ms: number): () => void {
  let t = 0;
  return () => { clearTimeout(t); t = window.setTimeout(fn, ms); };
}

restoreFilters();
const reload = () => { offset = 0; void load(); };
form.addEventListener('change', reload);
form.addEventListener('input', debounce(reload, 300));
form.addEventListener('submit', (e) => { e.preventDefault(); reload(); });
pager.addEventListener('click', (e) => {
  const dir = (e.target as HTMLElement).closest<HTMLElement>('[data-page]')?.dataset.page;
  if (!dir) return;
  offset = Math.max(0, offset + (dir === 'next' ? PAGE_SIZE : -PAGE_SIZE));
  void load();
});
document.querySelectorAll<HTMLElement>('th[data-order]').forEach((th) => th.addEventListener('click', () => {
  const select = form.elements.namedItem('ordering') as HTMLSelectElement;
  const key = th.dataset.order!;
  select.value = select.value === `-${key}` ? key : `-${key}`;
  reload();
}));
const uploadButton = document.querySelector<HTMLButtonElement>('#upload-button');
if (uploadButton) bindUpload(uploadButton, document.querySelector<HTMLElement>('#upload-panel')!, () => void load());
void load();
