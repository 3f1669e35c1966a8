// Viewer page: loads the study, its latest analysis and boxes, and wires the viewport, overlays, boxes, strip,
// decision panel and shortcuts together. What a role cannot do is not shown.

import '../styles.css';
import { ApiError, api, type Analysis, type BoxLabel, type Me, type StudyDetail, type StudyStatus } from '../api';
import { BOX_LABEL_TEXT, dicomDate, STATUS_TEXT } from '../ui/format';
import { el, toast } from '../ui/toast';
import { BoxLayer } from './boxes';
import { initCornerstone } from './cornerstone';
import { DecisionPanel } from './decision';
import { renderOpacityPanel, renderOutsideBanner } from './measures';
import { legendGradient, MAP_KINDS, MapOverlays, OPACITY_LEGEND, type MapKind } from './overlays';
import { bindShortcuts, type Shortcut } from './shortcuts';
import { SliceStrip } from './strip';
import { CtViewport, PRESETS, type LeftTool, type PresetName } from './viewport';
import { withQuery, worklistQuery } from '../worklist/query';

const $ = <T extends HTMLElement>(selector: string) => document.querySelector<T>(selector)!;

async function main(): Promise<void> {
  const root = $('#viewer-app');
  const studyId = Number(root.dataset.studyId);
  const { cpu } = initCornerstone(); // while the study loads
  root.dataset.renderer = cpu ? 'cpu' : 'webgl';
  const [me, study, analysis] = await Promise.all([
    api.me(), api.study(studyId),
    api.analysis(studyId).catch((err) => (err instanceof ApiError && err.status === 404 ? null : Promise.reject(err))),
  ]);
  const roles = new Set(me.roles);
  const canBoxes = roles.has('annotator') || roles.has('admin');
  const canDecide = roles.has('clinician') || roles.has('admin');
  const worklist = worklistQuery(location.search);
  renderHeader(study, me, worklist);
  renderOutsideBanner($('#outside-banner'), analysis);
  renderOpacityPanel($('#opacity-panel'), analysis);

  const series = pickSeries(study, analysis);
  if (!series?.instances.length) {
    $('#ct-viewport').appendChild(el('p', 'empty', 'This study has no images to show.'));
    return;
  }
  const viewportEl = $<HTMLDivElement>('#ct-viewport');
  const view = new CtViewport(viewportEl, study.study_instance_uid, series.series_instance_uid, series.instances);
  const bySop = new Map(analysis?.slices.map((s) => [s.sop_instance_uid, s]) ?? []);
  const slices = series.instances.map((i) => bySop.get(i.sop_instance_uid));

  const start = startIndex(slices, analysis);
  view.on('render', markFirstImage);
  await view.load(start);
  bindSliceControls(view);

  const maps = analysis ? new MapOverlays(view, analysis.id, slices, viewportEl, analysis.opacity != null) : null;
  const boxes = new BoxLayer(view, studyId, canBoxes);
  const strip = analysis ? new SliceStrip($<HTMLCanvasElement>('#slice-strip'), view, slices, analysis.label) : null;
  const decision = new DecisionPanel($('#decision-panel'), studyId, analysis, study.decision, canDecide, worklist,
    (status) => showStatus(status));
  if (maps) renderOverlayControls($('#overlay-panel'), maps);
  else $('#overlay-panel').replaceChildren(el('p', 'muted', 'No AI analysis: no maps to show.'));
  renderToolbar($('#tools'), view, boxes);
  renderBoxPanel($('#box-panel'), boxes, view);
  boxes.load().catch((err) => toast(`Could not load boxes: ${(err as Error).message}`, 'error'));

  const jump = (i: number | null | undefined) => { if (i != null) void view.scrollTo(i); };
  const shortcuts: Shortcut[] = [
    { keys: ['ArrowDown', 'ArrowRight'], help: 'Next slice', run: () => void view.scrollBy(1) },
    { keys: ['ArrowUp', 'ArrowLeft'], help: 'Previous slice', run: () => void view.scrollBy(-1) },
    { keys: ['PageDown', 'PageUp'], help: '10 slices forward / back', run: (e) => void view.scrollBy(e.key === 'PageDown' ? 10 : -10) },
    { keys: ['Home', 'End'], help: 'First / last slice', run: (e) => jump(e.key === 'Home' ? 0 : view.count - 1) },
    { keys: ['n', 'p'], help: 'Next / previous slice the AI finds positive', run: (e) => jump(strip?.nextPositive(e.key === 'n' ? 1 : -1)) },
    { keys: ['1', '2', '3'], help: 'W/L preset: lung, mediastinum, bone', run: (e) => view.applyPreset((['lung', 'mediastinum', 'bone'] as const)[Number(e.key) - 1]) },
    { keys: ['w', 'v', 'z'], help: 'Left button: window/level, pan, zoom', run: (e) => setLeftTool(view, boxes, ({ w: 'wl', v: 'pan', z: 'zoom' } as const)[e.key as 'w' | 'v' | 'z']) },
    { keys: ['r'], help: 'Reset zoom, pan and window', run: () => view.reset() },
  ];
  if (maps) {
    shortcuts.push(
      { keys: ['h'], help: 'Toggle the saliency heatmap', run: () => toggleMap(maps, 'joint') },
      { keys: ['g'], help: 'Toggle the lung outline', run: () => toggleMap(maps, 'lung') },
      { keys: ['o'], help: 'Toggle the opacity overlay (GGO / consolidation)', run: () => toggleMap(maps, 'opacity') },
    );
  }
  if (canBoxes) {
    shortcuts.push(
      { keys: ['b'], help: 'Box mode: draw (drag on the image), move (drag an edge), resize (drag a corner)', run: () => setLeftTool(view, boxes, boxes.mode ? 'wl' : 'box') },
      { keys: ['a'], help: 'Accept the selected AI box', run: () => void boxes.accept() },
      { keys: ['x'], help: 'Reject the selected AI box', run: () => void boxes.reject() },
      { keys: ['Delete', 'Backspace'], help: 'Delete the selected box', run: () => void boxes.remove() },
      { keys: ['l'], help: 'Cycle the selected box\'s label', run: () => cycleLabel(boxes) },
      { keys: ['Escape'], help: 'Deselect the box', run: () => boxes.select(null) },
    );
  }
  if (canDecide) {
    shortcuts.push(
      { keys: ['c'], help: 'Confirm the AI diagnosis: asks first (Enter confirms, Escape cancels)', run: () => void decision.confirmAi(analysis) },
      { keys: ['s'], help: 'Save the decision', run: () => void decision.save() },
      { keys: ['Shift+Enter'], help: 'Mark reviewed and open the next case', run: () => void decision.markReviewed() },
    );
  }
  bindShortcuts(shortcuts, $<HTMLDialogElement>('#help-dialog'), $('#help-button'));
  root.dataset.ready = 'true';
}

/** A performance mark at the first rendered image (bench/viewer.py reads it; so can real-user monitoring). */
function markFirstImage(): void {
  if (!performance.getEntriesByName('lungscope:first-image').length) performance.mark('lungscope:first-image');
}

function pickSeries(study: StudyDetail, analysis: Analysis | null) {
  const uid = analysis?.series_instance_uid ?? study.latest_analysis?.series_instance_uid;
  return study.series.find((s) => s.series_instance_uid === uid)
    ?? [...study.series].sort((a, b) => b.instances.length - a.instances.length)[0];
}

/** Open at the slice the AI is most sure about, else mid-stack. */
function startIndex(slices: (Analysis['slices'][number] | undefined)[], analysis: Analysis | null): number {
  let best = Math.floor(slices.length / 2);
  let bestP = -1;
  if (analysis) slices.forEach((s, i) => { const p = s?.probabilities[analysis.label] ?? -1; if (p > bestP) { bestP = p; best = i; } });
  return best;
}

function renderHeader(study: StudyDetail, me: Me, worklist: URLSearchParams): void {
  const header = $('#study-header');
  header.querySelector<HTMLAnchorElement>('a.back')!.href = withQuery('/', worklist); // back to the list as filtered
  const who = header.appendChild(el('div', 'who'));
  who.append(el('strong', '', study.patient_name || study.patient_id || '—'), el('span', 'muted', ` ${study.patient_id}`));
  header.append(
    el('div', '', `${dicomDate(study.study_date)} · ${study.study_description || 'CT'}${study.accession_number ? ` · Acc ${study.accession_number}` : ''}`),
    el('span', 'study-status'),
    el('span', 'muted', `${me.username} (${me.roles.join(', ') || 'no role'})`),
  );
  document.title = `${study.patient_id} · lungscope`;
  showStatus(study.status);
}

function showStatus(status: StudyStatus): void {
  const host = $('#study-header .study-status');
  host.replaceChildren(el('span', `badge badge-${status}`, STATUS_TEXT[status] ?? status));
  host.dataset.status = status;
}

function bindSliceControls(view: CtViewport): void {
  const slider = $<HTMLInputElement>('#slice-slider');
  const info = $('#slice-info');
  const wl = $('#wl-info');
  Object.assign(slider, { min: '0', max: String(view.count - 1), value: String(view.index) });
  slider.addEventListener('input', () => void view.scrollTo(Number(slider.value)));
  const update = () => {
    const i = view.index;
    const z = view.instances[i]?.z_mm;
    slider.value = String(i);
    info.textContent = `Slice ${i + 1} / ${view.count}${z != null ? ` · z ${z.toFixed(1)} mm` : ''}`;
    info.dataset.index = String(i);
    const { width, level } = view.windowLevel();
    wl.textContent = `W ${Math.round(width)} L ${Math.round(level)}`;
    // Lit is the preset whose window is shown, none after a W/L drag: the button and the readout never disagree.
    const shown = view.shownPreset();
    document.querySelectorAll<HTMLButtonElement>('[data-preset]').forEach((b) => b.classList.toggle('active', b.dataset.preset === shown));
  };
  view.on('render', update);
  update();
}

function setLeftTool(view: CtViewport, boxes: BoxLayer, tool: LeftTool): void {
  boxes.setMode(tool === 'box');
  view.setLeftTool(tool);
  document.querySelectorAll<HTMLButtonElement>('[data-tool]').forEach((b) => b.classList.toggle('active', b.dataset.tool === tool));
}

function toggleMap(maps: MapOverlays, kind: MapKind): void {
  maps.toggle(kind);
  const box = document.querySelector<HTMLInputElement>(`input[data-map=${kind}]`);
  if (box) box.checked = maps.isOn(kind);
}

function cycleLabel(boxes: BoxLayer): void {
  const box = boxes.selected;
  if (!box) return;
  const labels = Object.keys(BOX_LABEL_TEXT) as BoxLabel[];
  void boxes.setLabel(labels[(labels.indexOf(box.label) + 1) % labels.length]);
}

function renderToolbar(bar: HTMLElement, view: CtViewport, boxes: BoxLayer): void {
  const tools: [LeftTool, string, string][] = [['wl', 'W/L', 'w'], ['pan', 'Pan', 'v'], ['zoom', 'Zoom', 'z']];
  if (boxes.canEdit) tools.push(['box', 'Boxes', 'b']);
  const group = bar.appendChild(el('div', 'group'));
  for (const [tool, text, key] of tools) {
    const b = group.appendChild(el('button', tool === 'wl' ? 'active' : '', text));
    Object.assign(b, { type: 'button', title: `${text} (${key})` });
    b.dataset.tool = tool;
    b.addEventListener('click', () => setLeftTool(view, boxes, tool));
  }
  const presets = bar.appendChild(el('div', 'group'));
  (Object.entries(PRESETS) as [PresetName, (typeof PRESETS)[PresetName]][]).forEach(([name, p], i) => {
    const b = presets.appendChild(el('button', name === view.shownPreset() ? 'active' : '', p.label));
    Object.assign(b, { type: 'button', title: `W${p.width} L${p.level} (${i + 1})` });
    b.dataset.preset = name;
    b.addEventListener('click', () => view.applyPreset(name));
  });
  const reset = bar.appendChild(el('button', '', 'Reset'));
  Object.assign(reset, { type: 'button', title: 'Reset zoom, pan and window (r)' });
  reset.addEventListener('click', () => view.reset());
}

function renderOverlayControls(panel: HTMLElement, maps: MapOverlays): void {
  panel.replaceChildren(el('h3', '', 'Overlays'));
  for (const { kind, label, opacity } of MAP_KINDS) {
    const row = panel.appendChild(el('label', 'overlay-row'));
    const check = row.appendChild(el('input'));
    Object.assign(check, { type: 'checkbox', checked: maps.isOn(kind) });
    check.dataset.map = kind;
    check.addEventListener('change', () => maps.toggle(kind, check.checked));
    row.append(` ${label}`);
    const range = row.appendChild(el('input'));
    Object.assign(range, { type: 'range', min: '0', max: '1', step: '0.05', value: String(opacity), title: `${label} opacity` });
    range.dataset.opacity = kind;
    range.addEventListener('input', () => maps.setOpacity(kind, Number(range.value)));
    if (kind === 'joint') {
      const legend = panel.appendChild(el('div', 'legend'));
      legend.append(el('span', 'muted', 'low'), el('span', 'ramp'), el('span', 'muted', 'high saliency'));
      (legend.querySelector('.ramp') as HTMLElement).style.background = legendGradient();
    }
    if (kind === 'opacity') {
      const legend = panel.appendChild(el('div', 'legend opacity-legend'));
      for (const { label: text, colour } of OPACITY_LEGEND) {
        legend.appendChild(el('span', 'swatch')).style.background = colour;
        legend.appendChild(el('span', 'muted', text));
      }
    }
  }
}

function renderBoxPanel(panel: HTMLElement, boxes: BoxLayer, view: CtViewport): void {
  const render = () => {
    panel.replaceChildren(el('h3', '', 'Lesion boxes'));
    if (boxes.canEdit) {
      const row = panel.appendChild(el('label', 'new-label', 'New box label '));
      row.appendChild(labelSelect(boxes.newLabel, (l) => { boxes.newLabel = l; }, 'new-box-label'));
      panel.appendChild(el('p', 'muted small', boxes.mode
        ? 'Drag on the image to draw a box; drag a box\'s edge to move it, a corner to resize it.'
        : 'Box mode (b) draws, moves and resizes boxes.'));
    }
    const sel = boxes.selected;
    if (sel && boxes.canEdit) {
      const actions = panel.appendChild(el('div', 'box-actions'));
      actions.appendChild(labelSelect(sel.label, (l) => void boxes.setLabel(l), 'selected-box-label'));
      for (const [text, act, show] of [
        ['Accept', () => boxes.accept(), sel.provenance === 'ai' && sel.status === 'proposed'],
        ['Reject', () => boxes.reject(), sel.status !== 'rejected'],
        ['Delete', () => boxes.remove(), true],
      ] as [string, () => Promise<void>, boolean][]) {
        if (!show) continue;
        const b = actions.appendChild(el('button', '', text));
        b.type = 'button';
        b.dataset.action = text.toLowerCase();
        b.addEventListener('click', () => void act());
      }
    }
    const list = panel.appendChild(el('ul', 'box-list'));
    const index = new Map(view.instances.map((inst, i) => [inst.sop_instance_uid, i]));
    const visible = boxes.visible().sort((a, b) => (index.get(a.sop_instance_uid) ?? 0) - (index.get(b.sop_instance_uid) ?? 0));
    for (const box of visible) {
      const li = list.appendChild(el('li', `${box.id === boxes.selectedId ? 'selected' : ''} status-${box.status}`));
      li.dataset.boxId = String(box.id);
      li.dataset.rect = `${box.x0},${box.y0},${box.x1},${box.y1}`;
      li.append(
        el('span', 'slice', `#${(index.get(box.sop_instance_uid) ?? -1) + 1}`),
        el('span', '', BOX_LABEL_TEXT[box.label]),
        el('span', 'muted', `${box.provenance === 'ai' ? `AI ${box.score?.toFixed(2) ?? ''}` : box.provenance.replace('_', ' ')} · ${box.status}`),
      );
      li.addEventListener('click', () => boxes.select(box));
    }
    if (!visible.length) list.appendChild(el('li', 'muted', 'No boxes.'));
  };
  boxes.onChange(render);
  render();
}

function labelSelect(value: BoxLabel, onChange: (l: BoxLabel) => void, name: string): HTMLSelectElement {
  const select = el('select');
  select.name = name;
  for (const [key, text] of Object.entries(BOX_LABEL_TEXT)) select.appendChild(Object.assign(el('option', '', text), { value: key }));
  select.value = value;
  select.addEventListener('change', () => onChange(select.value as BoxLabel));
  return select;
}

main().catch((err) => {
  console.error(err);
  toast(`The viewer could not start: ${(err as Error).message}`, 'error', 60000);
  document.querySelector<HTMLElement>('#viewer-app')!.dataset.ready = 'error';
});
