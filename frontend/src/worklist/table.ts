// Renders worklist rows; a row opens the viewer, carrying the list's filters and sort (for its "next case").

import type { Job, StudyRow } from '../api';
import { classText, dicomDate, infection, OUTSIDE_TEXT, percent, relativeTime, STATUS_TEXT, DECISION_TEXT } from '../ui/format';
import { el } from '../ui/toast';
import { withQuery } from './query';

export function renderRows(body: HTMLTableSectionElement, rows: StudyRow[], jobs: Map<number, Job>, worklist: URLSearchParams): void {
  body.replaceChildren(...rows.map((row) => renderRow(row, jobs.get(row.id), worklist)));
  if (!rows.length) {
    const empty = body.appendChild(el('tr'));
    const cell = empty.appendChild(el('td', 'empty', 'No studies match. Upload DICOM files or a zip to start.'));
    cell.colSpan = 8;
  }
}

function renderRow(row: StudyRow, job: Job | undefined, worklist: URLSearchParams): HTMLTableRowElement {
  const tr = el('tr', 'study-row');
  tr.dataset.studyId = String(row.id);
  tr.dataset.status = row.status;
  tr.tabIndex = 0;
  const href = withQuery(`/studies/${row.id}/`, worklist);

  const patient = el('td', 'patient');
  const link = patient.appendChild(el('a', '', row.patient_name || row.patient_id || '—'));
  link.href = href;
  patient.appendChild(el('div', 'muted', [row.patient_id, row.accession_number && `Acc ${row.accession_number}`].filter(Boolean).join(' · ')));

  const ai = el('td', 'ai');
  if (row.ai_label) {
    ai.append(el('span', `label label-${row.ai_label.toLowerCase()}`, classText(row.ai_label)), ' ', el('span', 'muted', percent(row.ai_probability)));
  } else ai.textContent = '—';
  if (row.ai_outside) {
    const flag = ai.appendChild(el('span', 'outside-flag', 'outside'));
    flag.title = OUTSIDE_TEXT;
  }

  const status = el('td');
  status.appendChild(el('span', `badge badge-${row.status}`, STATUS_TEXT[row.status] ?? row.status));
  if (row.status === 'analysing' && job) {
    const bar = status.appendChild(el('progress', 'job-progress'));
    bar.max = 100; // percent
    bar.value = job.progress ?? 0;
    bar.title = `${job.progress ?? 0}% ${job.message}`;
  }

  tr.append(
    patient,
    el('td', '', dicomDate(row.study_date)),
    el('td', 'muted', row.study_description || '—'),
    ai,
    el('td', 'num opacity', infection(row.opacity_percent)),
    status,
    el('td', '', [row.reviewer, row.decision_label && `(${DECISION_TEXT[row.decision_label]})`].filter(Boolean).join(' ') || '—'),
    el('td', 'muted', relativeTime(row.updated_at)),
  );
  const open = () => { window.location.href = href; };
  tr.addEventListener('click', (e) => { if (!(e.target as HTMLElement).closest('a')) open(); });
  tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') open(); });
  return tr;
}
