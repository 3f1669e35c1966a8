// The slice strip beside the slider: one bar per slice with the AI probability of the predicted class, the
// current slice marked; click jumps there. "Positive" slices (p >= 0.5) are what n / p jump between.

import type { SliceInfo } from '../api';
import type { CtViewport } from './viewport';

const POSITIVE = 0.5;

export class SliceStrip {
  private readonly probs: (number | null)[];
  private readonly ctx: CanvasRenderingContext2D;

  constructor(private readonly canvas: HTMLCanvasElement, private readonly view: CtViewport, slices: (SliceInfo | undefined)[], label: string) {
    this.probs = slices.map((s) => (s ? s.probabilities[label] ?? null : null));
    this.ctx = canvas.getContext('2d')!;
    canvas.title = `AI probability of ${label} per slice; click to jump`;
    canvas.addEventListener('click', (e) => {
      const r = canvas.getBoundingClientRect();
      void view.scrollTo(Math.floor(((e.clientX - r.left) / r.width) * view.count));
    });
    view.on('slice', () => this.draw());
    new ResizeObserver(() => this.draw()).observe(canvas);
  }

  /** Index of the next (dir 1) or previous (dir -1) positive slice, wrapping around; null when there is none. */
  nextPositive(dir: 1 | -1): number | null {
    const n = this.probs.length;
    for (let step = 1; step < n; step++) {
      const i = (((this.view.index + dir * step) % n) + n) % n;
      if ((this.probs[i] ?? 0) >= POSITIVE) return i;
    }
    return null;
  }

  draw(): void {
    const dpr = window.devicePixelRatio || 1;
    const w = Math.round(this.canvas.clientWidth * dpr);
    const h = Math.round(this.canvas.clientHeight * dpr);
    if (this.canvas.width !== w || this.canvas.height !== h) Object.assign(this.canvas, { width: w, height: h });
    const ctx = this.ctx;
    ctx.clearRect(0, 0, w, h);
    const n = this.probs.length;
    const bw = w / n;
    this.probs.forEach((p, i) => {
      if (p == null) return;
      ctx.fillStyle = p >= POSITIVE ? '#ff5b4f' : '#4f8cff';
      const bh = Math.max(1, p * h);
      ctx.fillRect(i * bw, h - bh, Math.max(1, bw - (bw > 3 ? 1 : 0)), bh);
    });
    ctx.fillStyle = '#fff';
    ctx.fillRect(this.view.index * bw, 0, Math.max(2, bw), h);
  }
}
