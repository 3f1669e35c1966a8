// The training run's loss chart: training and validation loss against the iteration, as SVG polylines.

import type { LossPoint } from '../admin/api';

const SVG = 'http://www.w3.org/2000/svg';
const [W, H, LEFT, BOTTOM] = [720, 260, 50, 24];

function svgEl<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>): SVGElementTagNameMap[K] {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  return node;
}

function label(svg: SVGSVGElement, x: number, y: number, content: string, anchor = 'start'): void {
  const t = svg.appendChild(svgEl('text', { x, y, 'font-size': 11, 'text-anchor': anchor, fill: 'currentColor' }));
  t.textContent = content;
}

export function drawLoss(svg: SVGSVGElement, points: LossPoint[], total: number): void {
  svg.replaceChildren();
  const losses = points.flatMap((p) => [p.loss, p.val_loss]).filter((v): v is number => v != null);
  const top = losses.length ? Math.max(...losses) * 1.05 : 1;
  const x = (i: number) => LEFT + ((W - LEFT - 10) * i) / Math.max(1, total);
  const y = (v: number) => H - BOTTOM - ((H - BOTTOM - 10) * v) / top;
  svg.appendChild(svgEl('path', { d: `M${LEFT},10 V${H - BOTTOM} H${W - 10}`, stroke: '#888', fill: 'none' }));
  label(svg, LEFT - 4, 14, top.toFixed(2), 'end');
  label(svg, LEFT - 4, H - BOTTOM, '0', 'end');
  label(svg, W - 10, H - 6, `iteration ${total}`, 'end');
  const line = (key: 'loss' | 'val_loss', color: string, series: string) => {
    const xy = points.filter((p) => p[key] != null).map((p) => `${x(p.iter).toFixed(1)},${y(p[key]!).toFixed(1)}`);
    if (xy.length) svg.appendChild(svgEl('polyline', { points: xy.join(' '), fill: 'none', stroke: color, 'stroke-width': 1.5, 'data-series': series }));
  };
  line('loss', '#4f8cff', 'training');
  line('val_loss', '#f5a623', 'validation');
}
