// A canvas stacked over the viewport, sized to it at device resolution; layers draw in image pixel coordinates.

import type { CtViewport, PixelTransform } from './viewport';

export class OverlayCanvas {
  readonly canvas: HTMLCanvasElement;
  readonly ctx: CanvasRenderingContext2D;
  private blank = true;

  constructor(host: HTMLElement, className: string) {
    this.canvas = document.createElement('canvas');
    this.canvas.className = `overlay ${className}`;
    host.appendChild(this.canvas);
    this.ctx = this.canvas.getContext('2d')!;
  }

  /**
   * Clears the canvas and returns the transform to draw in image pixels (null before the first image). With
   * nothing to draw it skips the work while the canvas is already blank: layers redraw on every rendered frame.
   */
  begin(view: CtViewport, drawing = true): PixelTransform | null {
    if (!drawing && this.blank) return null;
    this.blank = !drawing;
    const dpr = window.devicePixelRatio || 1;
    const { clientWidth: w, clientHeight: h } = this.canvas;
    if (this.canvas.width !== Math.round(w * dpr) || this.canvas.height !== Math.round(h * dpr)) {
      this.canvas.width = Math.round(w * dpr);
      this.canvas.height = Math.round(h * dpr);
    }
    this.ctx.setTransform(1, 0, 0, 1, 0, 0);
    this.ctx.clearRect(0, 0, this.canvas.width, this.canvas.height);
    return view.pixelTransform();
  }

  /** Draw in image pixel coordinates from here on. */
  usePixels(t: PixelTransform): void {
    const dpr = window.devicePixelRatio || 1;
    this.ctx.setTransform(t.a * dpr, t.b * dpr, t.c * dpr, t.d * dpr, t.e * dpr, t.f * dpr);
  }
}
