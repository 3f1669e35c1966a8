// Model registry page (admins): model versions side by side with the version active when each was trained,
// promote and roll back, start training on a dataset version, follow a run's loss live, cancel a run.

import '../styles.css';
import { adminApi, type LossPoint, type ModelVersion, type StudyFigures, type TrainingRun } from '../admin/api';
import { button, cell, loadFailed, runAction } from '../admin/ui';
import { confirmAction } from '../ui/dialog';
import { el } from '../ui/toast';
import { drawLoss } from './chart';

const RUNS_POLL_MS = 3000;
const CHART_POLL_MS = 2000;
const LIVE = ['queued', 'running'];
const $ = <T extends Element>(selector: string) => document.querySelector<T>(selector)!;

const fmt = (v: number | null | undefined) => (v == null || Number.isNaN(v) ? '–' : v.toFixed(3));

/** This version's held-out figure beside the then-active version's on the same studies, coloured by which is better. */
function pair(row: HTMLTableRowElement, v: ModelVersion, key: keyof StudyFigures): void {
  const mine = v.held_out?.study?.[key] ?? null;
  const other = v.active_on_held_out?.study?.[key] ?? null;
  const td = cell(row, v.active_on_held_out ? `${fmt(mine)} / ${fmt(other)}` : fmt(mine));
  if (mine != null && other != null && mine !== other) td.className = mine > other ? 'better' : 'worse';
}

async function loadVersions(): Promise<void> {
  const body = $<HTMLTableSectionElement>('#versions');
  const start = $<HTMLSelectElement>('#start');
  let versions: ModelVersion[];
  try {
    versions = await adminApi.modelVersions();
  } catch (err) {
    body.replaceChildren();
    loadFailed(body, 'the model versions', err, 11);
    return;
  }
  body.replaceChildren();
  start.replaceChildren(new Option('scratch', ''));
  for (const v of versions) {
    const row = body.insertRow();
    row.dataset.versionId = String(v.id);
    if (v.is_active) row.className = 'active';
    cell(row, `${v.name} ${v.version}${v.is_active ? ' (active)' : ''}`);
    cell(row, v.source);
    cell(row, v.classes.join(', '));
    cell(row, v.dataset_version);
    for (const key of ['accuracy', 'auc', 'sensitivity', 'specificity'] as const) pair(row, v, key);
    cell(row, v.metrics?.comparison?.held_out_studies?.length || '');
    const roc = cell(row);
    if (v.roc_url) Object.assign(roc.appendChild(el('a', '', 'ROC')), { href: v.roc_url, target: '_blank' });
    const actions = cell(row);
    if (!v.is_active) {
      const b = actions.appendChild(button('Promote', 'promote'));
      b.addEventListener('click', async () => {
        if (!(await confirmAction('Promote this model?', `Make ${v.name} ${v.version} the model for new analyses?`, 'Promote'))) return;
        const ok = await runAction(b, `Promote ${v.name} ${v.version}`, $('#versions-result'), async () => {
          const active = await adminApi.promote(v.id);
          return `active: ${active.name} ${active.version}`;
        });
        if (ok) void loadVersions();
      });
    }
    start.append(new Option(`${v.name} ${v.version}`, String(v.id)));
  }
}

async function loadDatasets(): Promise<void> {
  const select = $<HTMLSelectElement>('#datasets');
  try {
    const versions = await adminApi.datasetVersions();
    select.replaceChildren(...versions.map((d) => new Option(`${d.id}: ${d.name} (${d.summary.studies} studies)`, String(d.id))));
  } catch (err) {
    $('#train-result').textContent = `Could not load the dataset versions: ${(err as Error).message}`;
    $('#train-result').className = 'action-result error';
  }
}

let followed: number | null = null;
let points: LossPoint[] = [];
let chartTimer = 0;
let runsTimer = 0;

async function loadRuns(): Promise<void> {
  clearTimeout(runsTimer);
  const body = $<HTMLTableSectionElement>('#runs');
  let runs: TrainingRun[];
  try {
    runs = await adminApi.trainingRuns();
  } catch (err) {
    body.replaceChildren();
    loadFailed(body, 'the training runs', err, 7);
    return;
  }
  body.replaceChildren();
  for (const r of runs) runRow(body.insertRow(), r);
  if (!runs.length) cell(body.insertRow(), 'No training runs yet.').colSpan = 7;
  if (runs.some((r) => LIVE.includes(r.status))) {
    runsTimer = window.setTimeout(() => { void loadRuns(); void loadVersions(); }, RUNS_POLL_MS);
  }
}

function runRow(row: HTMLTableRowElement, r: TrainingRun): void {
  row.dataset.runId = String(r.id);
  cell(row, r.id);
  cell(row, r.dataset_version);
  cell(row, r.config.task);
  cell(row, r.status + (r.error ? `: ${r.error.split('\n')[0]}` : ''));
  cell(row, `${r.iteration} / ${r.total_iterations}`);
  cell(row, r.model_version);
  const actions = cell(row);
  const follow = actions.appendChild(button('Progress', 'progress'));
  follow.addEventListener('click', () => followRun(r.id));
  if (LIVE.includes(r.status)) {
    const cancel = actions.appendChild(button('Cancel', 'cancel'));
    cancel.addEventListener('click', async () => {
      const ok = await runAction(cancel, `Cancel run ${r.id}`, $('#runs-result'), async () => {
        await adminApi.cancelTraining(r.id);
        return `run ${r.id}: cancelling`;
      });
      if (ok) void loadRuns();
    });
  }
}

function followRun(id: number): void {
  followed = id;
  points = [];
  void pollChart();
}

async function pollChart(): Promise<void> {
  clearTimeout(chartTimer);
  if (followed === null) return;
  const title = $('#chart-title');
  try {
    const body = await adminApi.progress(followed, points.length ? points[points.length - 1].iter : 0);
    points = points.concat(body.points);
    title.textContent = `Run ${body.id}: ${body.status}, iteration ${body.iteration} of ${body.total_iterations}`;
    $('#eta').textContent = body.eta_s ? `ETA ${Math.round(body.eta_s)} s` : '';
    drawLoss($<SVGSVGElement>('#chart'), points, body.total_iterations);
    if (LIVE.includes(body.status)) chartTimer = window.setTimeout(() => void pollChart(), CHART_POLL_MS);
  } catch (err) {
    title.textContent = `Could not follow run ${followed}: ${(err as Error).message}`;
  }
}

const trainForm = $<HTMLFormElement>('#train');
trainForm.addEventListener('submit', (event) => {
  event.preventDefault();
  const data = new FormData(trainForm);
  void runAction(trainForm.querySelector('button[type=submit]')!, 'Start training', $('#train-result'), async () => {
    const run = await adminApi.startTraining(Number(data.get('dataset_version')), {
      task: String(data.get('task')), iterations: Number(data.get('iterations')), seed: Number(data.get('seed')),
      start_bundle: data.get('start_bundle') ? Number(data.get('start_bundle')) : null,
    });
    void loadRuns();
    followRun(run.id);
    return `run ${run.id} queued`;
  });
});

const rollback = $<HTMLButtonElement>('#rollback');
rollback.addEventListener('click', async () => {
  if (await runAction(rollback, 'Roll back', $('#versions-result'), async () => {
    const v = await adminApi.rollback();
    return `active: ${v.name} ${v.version}`;
  })) void loadVersions();
});

void Promise.all([loadVersions(), loadDatasets(), loadRuns()]).then(() => { document.body.dataset.loaded = 'true'; });
