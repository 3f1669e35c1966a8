// The decision panel: what the AI concluded, and for clinicians the confirm/correct form and "mark reviewed".
// The review starts (the study shows "in review" in the worklist) when the clinician first touches the form, not when
// the study is merely opened; confirming the AI's label always goes through a dialog that names it.

import { ApiError, api, type Analysis, type Decision, type DecisionLabel, type StudyStatus } from '../api';
import { confirmAction } from '../ui/dialog';
import { classText, DECISION_TEXT, infection, percent } from '../ui/format';
import { el, toast } from '../ui/toast';
import { withQuery } from '../worklist/query';

const AI_TO_DECISION: Record<string, DecisionLabel> = { COVID: 'covid', CAP: 'cap', NP: 'np' };

export class DecisionPanel {
  private decision: Decision | null;
  private readonly form: HTMLFormElement | null;
  private started: Promise<void> | null = null;

  /** ``worklist``: the filters and sort the clinician came from; ``onStatus`` hears the study's new status. */
  constructor(private readonly host: HTMLElement, private readonly studyId: number, analysis: Analysis | null,
    decision: Decision | null, canDecide: boolean, private readonly worklist: URLSearchParams,
    private readonly onStatus: (status: StudyStatus) => void) {
    this.decision = decision;
    host.replaceChildren(aiSummary(analysis));
    this.form = canDecide ? host.appendChild(this.buildForm(analysis)) : null;
    if (!canDecide) host.appendChild(el('p', 'current-decision'));
    this.show();
  }

  private buildForm(analysis: Analysis | null): HTMLFormElement {
    const form = el('form', 'decision-form');
    form.id = 'decision-form';
    const fieldset = form.appendChild(el('fieldset'));
    fieldset.appendChild(el('legend', '', 'Your diagnosis'));
    const suggested = analysis ? AI_TO_DECISION[analysis.label] : undefined;
    for (const [value, text] of Object.entries(DECISION_TEXT)) {
      const label = fieldset.appendChild(el('label', 'choice'));
      const input = label.appendChild(el('input'));
      Object.assign(input, { type: 'radio', name: 'label', value });
      label.append(` ${text}${value === suggested ? ' (AI)' : ''}`);
    }
    const comment = form.appendChild(el('textarea'));
    Object.assign(comment, { name: 'comment', rows: 3, placeholder: 'Comment (optional)' });
    const actions = form.appendChild(el('div', 'actions'));
    const save = actions.appendChild(el('button', 'primary', 'Save decision'));
    save.type = 'submit';
    save.title = 'Save decision (s)';
    const reviewed = actions.appendChild(el('button', '', 'Mark reviewed → next'));
    Object.assign(reviewed, { type: 'button', title: 'Mark reviewed and open the next case (Shift+Enter)', id: 'mark-reviewed' });
    form.addEventListener('input', () => void this.startReview());
    form.addEventListener('submit', (e) => { e.preventDefault(); void this.save(); });
    reviewed.addEventListener('click', () => void this.markReviewed());
    return form;
  }

  /** Begin the review once (a POST: reading the study changes nothing); a failure is reported, not fatal. */
  startReview(): Promise<void> {
    this.started ??= api.startReview(this.studyId).then(({ status }) => this.onStatus(status), (err) => {
      this.started = null;
      toast(`Could not start the review: ${(err as Error).message}`, 'warning');
    });
    return this.started;
  }

  /** Confirm the AI's label (keyboard shortcut): a dialog names the diagnosis; only its Confirm button saves it. */
  async confirmAi(analysis: Analysis | null): Promise<void> {
    const label = analysis && AI_TO_DECISION[analysis.label];
    const input = label && this.form?.querySelector<HTMLInputElement>(`input[value=${label}]`);
    if (!analysis || !label || !input) return;
    void this.startReview();
    const text = DECISION_TEXT[label];
    const yes = await confirmAction('Confirm the AI diagnosis?',
      `The AI calls this study ${text} (${percent(analysis.probabilities[analysis.label], 1)}). Save ${text} as your diagnosis?`,
      `Confirm ${text}`);
    if (!yes) return;
    input.checked = true;
    await this.save();
  }

  private show(): void {
    const d = this.decision;
    if (this.form) {
      this.form.querySelectorAll<HTMLInputElement>('input[name=label]').forEach((i) => { i.checked = i.value === d?.label; });
      (this.form.elements.namedItem('comment') as HTMLTextAreaElement).value = d?.comment ?? '';
    } else {
      this.host.querySelector('.current-decision')!.textContent = d ? `Clinician: ${DECISION_TEXT[d.label]}${d.comment ? ` — ${d.comment}` : ''}` : 'No clinician decision yet.';
    }
  }

  async save(): Promise<boolean> {
    if (!this.form) return false;
    const data = new FormData(this.form);
    const label = data.get('label') as DecisionLabel | null;
    if (!label) { toast('Choose a diagnosis first.', 'warning'); return false; }
    try {
      this.decision = await api.saveDecision(this.studyId, { label, comment: String(data.get('comment') ?? ''), version: this.decision?.version ?? 0 });
      toast(`Decision saved: ${DECISION_TEXT[label]}`, 'success');
      return true;
    } catch (err) {
      if (err instanceof ApiError && err.stale) {
        this.decision = await api.decision(this.studyId);
        this.show();
        toast(`Someone else saved a decision meanwhile (${DECISION_TEXT[this.decision.label]}): reloaded it, yours was not saved.`, 'warning');
      } else toast(`Could not save the decision: ${(err as Error).message}`, 'error');
      return false;
    }
  }

  async markReviewed(): Promise<void> {
    if (this.dirty() && !(await this.save())) return;
    try {
      const { next_study_id: next } = await api.markReviewed(this.studyId, this.worklist);
      toast('Marked reviewed', 'success');
      window.location.href = withQuery(next ? `/studies/${next}/` : '/', this.worklist);
    } catch (err) {
      toast(`Could not mark reviewed: ${(err as Error).message}`, 'error');
    }
  }

  private dirty(): boolean {
    if (!this.form) return false;
    const data = new FormData(this.form);
    return data.get('label') !== (this.decision?.label ?? null) || String(data.get('comment') ?? '') !== (this.decision?.comment ?? '');
  }
}

function aiSummary(analysis: Analysis | null): HTMLElement {
  const box = el('div', 'ai-summary');
  if (!analysis) {
    box.appendChild(el('p', 'muted', 'No AI analysis yet.'));
    return box;
  }
  const head = box.appendChild(el('div', 'ai-label'));
  head.append(el('span', `label label-${analysis.label.toLowerCase()}`, classText(analysis.label)), ' ',
    el('strong', '', percent(analysis.probabilities[analysis.label], 1)));
  const table = box.appendChild(el('table', 'probs'));
  for (const [key, p] of Object.entries(analysis.probabilities)) {
    const tr = table.appendChild(el('tr'));
    const bar = el('td', 'bar');
    bar.appendChild(el('span')).style.width = `${(p * 100).toFixed(1)}%`;
    tr.append(el('td', '', classText(key)), bar, el('td', 'num', percent(p, 1)));
  }
  const alone = analysis.classifier_probabilities;
  if (alone) {
    const line = box.appendChild(el('p', 'muted small classifier-alone', 'Decided with the lung opacity; the classifier alone: '
      + Object.entries(alone).map(([key, p]) => `${classText(key)} ${percent(p, 1)}`).join(', ')));
    line.title = 'The study label weighs the classifier\'s probabilities with the percentage of lung at opacity density '
      + '(HU), fitted on patients the classifier never saw; the classifier\'s own figures are shown here';
  }
  const infected = box.appendChild(el('p', '', `Infection: ${infection(analysis.infection_percent)} of lung`
    + (analysis.lung_volume_ml != null ? ` · lung ${Math.round(analysis.lung_volume_ml)} ml` : '')));
  infected.title = analysis.opacity_percent != null
    ? 'The opacity (ground glass and consolidation density) of the slices the AI calls diseased, over the lung volume'
    : 'The area the AI\'s saliency marks on the slices it calls diseased (no HU in these images to measure opacity)';
  box.appendChild(el('p', 'muted small', `Model ${analysis.model_name} ${analysis.model_version ?? ''}`));
  return box;
}
