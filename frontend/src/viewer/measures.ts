// The AI's study-level measures beside the decision: the "outside the model's experience" banner and the opacity
// figures (lungscope.analysis/2: percent of lung volume measured in HU, the severity figure).

import type { Analysis } from '../api';
import { infection as pct, OUTSIDE_TEXT } from '../ui/format';
import { el } from '../ui/toast';

/** Shows the banner when the domain model found the study unlike the model's training data. */
export function renderOutsideBanner(banner: HTMLElement, analysis: Analysis | null): void {
  const domain = analysis?.domain;
  banner.hidden = !domain?.outside;
  if (!domain?.outside) return;
  banner.replaceChildren(el('strong', '', OUTSIDE_TEXT),
    el('span', 'muted', ` (domain score ${domain.score.toFixed(2)}, threshold ${domain.threshold.toFixed(2)})`));
}

export function renderOpacityPanel(panel: HTMLElement, analysis: Analysis | null): void {
  panel.replaceChildren(el('h3', '', 'Opacity'));
  const opacity = analysis?.opacity;
  if (!opacity) {
    panel.appendChild(el('p', 'muted', analysis ? 'Not measured by this analysis.' : 'No AI analysis.'));
    return;
  }
  const table = panel.appendChild(el('dl', 'measures'));
  for (const [term, value, key] of [
    ['Total', opacity.percent, 'total'],
    ['High (consolidation)', opacity.high_percent, 'high'],
    ['Left lung', opacity.per_lung.left, 'left'],
    ['Right lung', opacity.per_lung.right, 'right'],
  ] as const) {
    table.append(el('dt', '', term));
    table.appendChild(el('dd', '', pct(value))).dataset.measure = key;
  }
  panel.appendChild(el('p', 'muted small', 'Percent of lung volume, measured in HU inside the lungs.'));
}
