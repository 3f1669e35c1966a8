// Curation page (admins): freeze a dataset version from reviewed studies, export a version (training-ready, COCO,
// DICOM SR, CSV; de-identified by default) and follow the exports' jobs until they end.

import '../styles.css';
import { adminApi, ENDED, EXPORT_FORMATS, type DatasetCriteria, type DatasetVersion } from '../admin/api';
import { button, cell, loadFailed, mib, runAction } from '../admin/ui';
import { el } from '../ui/toast';

const POLL_MS = 1500;
const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;

const counts = (obj: Record<string, number> | undefined) => Object.entries(obj ?? {}).map(([k, v]) => `${k} ${v}`).join(', ');

async function loadVersions(): Promise<void> {
  const body = $<HTMLTableSectionElement>('#versions');
  let versions: DatasetVersion[];
  try {
    versions = await adminApi.datasetVersions();
  } catch (err) {
    body.replaceChildren();
    loadFailed(body, 'the dataset versions', err, 9);
    return;
  }
  body.replaceChildren();
  for (const v of versions) versionRow(body.insertRow(), v);
  if (!versions.length) cell(body.insertRow(), 'No dataset versions yet.').colSpan = 9;
}

function versionRow(row: HTMLTableRowElement, v: DatasetVersion): void {
  row.dataset.versionId = String(v.id);
  const p = v.summary.boxes_per_provenance ?? {};
  cell(row, v.id);
  cell(row, v.name);
  cell(row, counts(v.summary.per_class));
  cell(row, `${p.ai_accepted ?? 0} / ${p.ai_edited ?? 0} / ${p.human ?? 0}`);
  cell(row, counts(v.summary.boxes_excluded));
  cell(row, (v.summary.reviewers ?? []).join(', '));
  const code = cell(row).appendChild(el('code', '', v.fingerprint.slice(0, 16)));
  code.title = v.fingerprint;
  cell(row, new Date(v.created_at).toLocaleString());
  const actions = cell(row);
  actions.className = 'actions';
  const deid = el('input');
  Object.assign(deid, { type: 'checkbox', checked: true, name: 'deidentify', title: 'De-identify (PS3.15 basic profile)' });
  const label = actions.appendChild(el('label', 'inline-check'));
  label.append(deid, ' de-identify');
  const out = $('#export-result'); // outside the table: the outcome outlives the next refresh
  for (const format of EXPORT_FORMATS) {
    const b = actions.appendChild(button(format, 'export'));
    b.dataset.format = format;
    b.addEventListener('click', async () => {
      const ok = await runAction(b, `Export ${format} of version ${v.id}`, out, async () => {
        const e = await adminApi.createExport(v.id, format, deid.checked);
        return `export ${e.id} (${format} of version ${v.id}) queued`;
      });
      void (ok ? loadExports() : loadVersions()); // a refusal may mean the list is stale (a version removed)
    });
  }
}

let exportTimer = 0;

async function loadExports(): Promise<void> {
  clearTimeout(exportTimer);
  const body = $<HTMLTableSectionElement>('#exports');
  let running = false;
  try {
    const exports = await adminApi.exports();
    body.replaceChildren();
    for (const e of exports) {
      const row = body.insertRow();
      row.dataset.exportId = String(e.id);
      const job = e.job;
      cell(row, e.id);
      cell(row, e.dataset_version);
      cell(row, e.format);
      cell(row, e.deidentify ? 'yes' : 'no');
      const progress = cell(row);
      const bar = progress.appendChild(el('progress'));
      bar.max = 100;
      bar.value = job?.progress ?? 0;
      const state = progress.appendChild(el('span', job?.status === 'failed' ? 'error' : 'muted', ` ${job?.status ?? ''}`));
      if (job?.status === 'failed') state.textContent += `: ${job.error || job.message}`;
      running ||= !ENDED.includes(job?.status ?? '');
      cell(row, mib(e.size));
      const link = cell(row);
      if (e.download_url) Object.assign(link.appendChild(el('a', '', 'zip')), { href: e.download_url });
    }
    if (!exports.length) cell(body.insertRow(), 'No exports yet.').colSpan = 7;
  } catch (err) {
    body.replaceChildren();
    loadFailed(body, 'the exports', err, 7);
  }
  if (running) exportTimer = window.setTimeout(() => void loadExports(), POLL_MS);
}

function criteria(form: HTMLFormElement): DatasetCriteria {
  const data = new FormData(form);
  const text = (key: string) => String(data.get(key) ?? '').trim();
  return {
    name: text('name'),
    reviewed_only: data.get('reviewed_only') === 'on',
    study_date_from: text('study_date_from'),
    study_date_to: text('study_date_to'),
    reviewed_from: text('reviewed_from') || null,
    reviewed_to: text('reviewed_to') || null,
    labels: data.getAll('labels').map(String),
    reviewers: text('reviewers').split(',').map((s) => s.trim()).filter(Boolean),
  };
}

const form = $<HTMLFormElement>('#create');
form.addEventListener('submit', (event) => {
  event.preventDefault();
  void runAction(form.querySelector('button[type=submit]')!, 'Create', $('#create-result'), async () => {
    const v = await adminApi.createDatasetVersion(criteria(form));
    void loadVersions();
    return `version ${v.id}: ${v.summary.studies} studies`;
  });
});

void Promise.all([loadVersions(), loadExports()]).then(() => { document.body.dataset.loaded = 'true'; });
