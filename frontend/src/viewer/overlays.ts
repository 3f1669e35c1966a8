// Saliency overlays: the joint heatmap, each scale's IG map and CAM, the lung outline, and the opacity labels. Maps
// come from the server as 8-bit grayscale PNGs at the slice's size (the opacity labels already in colour), are
// colourised once into canvases, cached, and drawn over the image with the viewport's pixel transform, so they follow
// zoom and pan.

import type { SliceInfo } from '../api';
import { el } from '../ui/toast';
import { OverlayCanvas } from './layer';
import type { CtViewport } from './viewport';

export const MAP_KINDS = [
  { kind: 'joint', label: 'Saliency (joint)', opacity: 0.5 },
  { kind: 'opacity', label: 'Opacity (GGO / consolidation)', opacity: 0.45 },
  { kind: 'conv3', label: 'IG conv3', opacity: 0.5 },
  { kind: 'conv4', label: 'IG conv4', opacity: 0.5 },
  { kind: 'conv5', label: 'IG conv5', opacity: 0.5 },
  { kind: 'cam3', label: 'CAM 3', opacity: 0.5 },
  { kind: 'cam4', label: 'CAM 4', opacity: 0.5 },
  { kind: 'cam5', label: 'CAM 5', opacity: 0.5 },
  { kind: 'lung', label: 'Lung outline', opacity: 0.8 },
] as const;
export type MapKind = (typeof MAP_KINDS)[number]['kind'];

/** The server's colours of the opacity labels (webapp/analysis/maps.py OPACITY_COLOURS), for the legend. */
export const OPACITY_LEGEND = [
  { label: 'Ground-glass (GGO)', colour: '#ffc400' },
  { label: 'Consolidation', colour: '#e61e3c' },
] as const;

const CACHE_LIMIT = 600;
const PREFETCH_PARALLEL = 4;
const JET = jetLut();

interface OverlayState { on: boolean; opacity: number }

export class MapOverlays {
  private readonly layer: OverlayCanvas;
  private readonly state = new Map<MapKind, OverlayState>(MAP_KINDS.map((m) => [m.kind, { on: false, opacity: m.opacity }]));
  private readonly cache = new Map<string, Promise<HTMLCanvasElement | null>>();
  private readonly ready = new Map<string, HTMLCanvasElement | null>();
  private readonly spinner: HTMLElement;

  constructor(
    private readonly view: CtViewport,
    private readonly runId: number,
    private readonly slices: (SliceInfo | undefined)[],
    host: HTMLElement,
    /** The run measured opacity (schema /2): a slice with opacity_px 0 has nothing to fetch. */
    private readonly opacityMeasured = false,
  ) {
    this.layer = new OverlayCanvas(host, 'maps-layer');
    this.spinner = host.appendChild(el('div', 'map-spinner', 'computing maps…'));
    this.spinner.hidden = true;
    view.on('render', () => this.draw());
  }

  isOn(kind: MapKind): boolean { return this.state.get(kind)!.on; }

  toggle(kind: MapKind, on = !this.isOn(kind)): void {
    this.state.get(kind)!.on = on;
    if (on) void this.prefetch(kind);
    this.draw();
  }

  setOpacity(kind: MapKind, opacity: number): void {
    this.state.get(kind)!.opacity = opacity;
    this.draw();
  }

  private key(kind: MapKind, index: number): string { return `${kind}/${index}`; }

  private load(kind: MapKind, index: number): Promise<HTMLCanvasElement | null> {
    const key = this.key(kind, index);
    let entry = this.cache.get(key);
    if (!entry) {
      const slice = this.slices[index];
      const blank = kind === 'opacity' && this.opacityMeasured && slice?.opacity_px === 0;
      entry = slice && !blank ? fetchMap(this.runId, slice.index, kind) : Promise.resolve(null);
      entry.then((canvas) => { this.ready.set(key, canvas); }, () => { this.cache.delete(key); });
      this.cache.set(key, entry);
      if (this.cache.size > CACHE_LIMIT) {
        const oldest = this.cache.keys().next().value!;
        this.cache.delete(oldest);
        this.ready.delete(oldest);
      }
    }
    return entry;
  }

  /** Fetch the maps the server already holds (opacity: the slices with some), nearest to the current slice first. */
  private async prefetch(kind: MapKind): Promise<void> {
    const here = this.view.index;
    const held = (s: SliceInfo | undefined) => (kind === 'opacity' ? (s?.opacity_px ?? 0) > 0 : s?.has_maps);
    const order = this.slices.map((s, i) => ({ s, i })).filter(({ s }) => held(s))
      .sort((p, q) => Math.abs(p.i - here) - Math.abs(q.i - here)).map(({ i }) => i);
    const worker = async () => {
      while (order.length && this.isOn(kind)) await this.load(kind, order.shift()!).catch(() => null);
    };
    await Promise.all(Array.from({ length: PREFETCH_PARALLEL }, worker));
  }

  /** True when every overlay that is on has its map for the current slice drawn. */
  get complete(): boolean {
    const index = this.view.index;
    return MAP_KINDS.every(({ kind }) => !this.isOn(kind) || this.ready.has(this.key(kind, index)));
  }

  draw(): void {
    const t = this.layer.begin(this.view, MAP_KINDS.some(({ kind }) => this.isOn(kind)));
    const index = this.view.index;
    let waiting = false;
    if (t) {
      this.layer.usePixels(t);
      const ctx = this.layer.ctx;
      ctx.imageSmoothingEnabled = false; // the maps have the image's own pixel grid
      for (const { kind } of MAP_KINDS) {
        const s = this.state.get(kind)!;
        if (!s.on) continue;
        const key = this.key(kind, index);
        if (!this.ready.has(key)) {
          waiting = true;
          this.load(kind, index).then(() => { if (this.view.index === index) this.draw(); }, () => undefined);
          continue;
        }
        const canvas = this.ready.get(key);
        if (!canvas) continue;
        ctx.globalAlpha = s.opacity;
        ctx.drawImage(canvas, 0, 0);
      }
      ctx.globalAlpha = 1;
    }
    this.spinner.hidden = !waiting;
    this.layer.canvas.dataset.complete = String(!waiting);
  }
}

async function fetchMap(runId: number, index: number, kind: MapKind): Promise<HTMLCanvasElement | null> {
  const res = await fetch(`/api/analysis-runs/${runId}/slices/${index}/maps/${kind}.png`, { credentials: 'same-origin' });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`maps ${kind} of slice ${index}: HTTP ${res.status}`);
  const bitmap = await createImageBitmap(await res.blob());
  const canvas = document.createElement('canvas');
  canvas.width = bitmap.width;
  canvas.height = bitmap.height;
  const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
  ctx.drawImage(bitmap, 0, 0);
  bitmap.close();
  if (kind === 'opacity') return canvas; // coloured by the server
  const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
  if (kind === 'lung') outline(image);
  else colourise(image);
  ctx.putImageData(image, 0, 0);
  return canvas;
}

/** Grayscale -> jet colours; faint values fade to transparent so the anatomy stays visible. */
function colourise(image: ImageData): void {
  const d = image.data;
  for (let p = 0; p < d.length; p += 4) {
    const v = d[p];
    const o = v * 4;
    d[p] = JET[o];
    d[p + 1] = JET[o + 1];
    d[p + 2] = JET[o + 2];
    d[p + 3] = JET[o + 3];
  }
}

/** Mask -> its boundary pixels (mask pixels with a 4-neighbour outside), in cyan. */
function outline(image: ImageData): void {
  const { width: w, height: h, data: d } = image;
  const inside = new Uint8Array(w * h);
  for (let i = 0; i < w * h; i++) inside[i] = d[i * 4] > 127 ? 1 : 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      const edge = inside[i] && (x === 0 || y === 0 || x === w - 1 || y === h - 1
        || !inside[i - 1] || !inside[i + 1] || !inside[i - w] || !inside[i + w]);
      d.set(edge ? [0, 230, 255, 255] : [0, 0, 0, 0], i * 4);
    }
  }
}

function jetLut(): Uint8ClampedArray {
  const lut = new Uint8ClampedArray(256 * 4);
  const clamp = (v: number) => Math.max(0, Math.min(1, v));
  for (let v = 0; v < 256; v++) {
    const t = v / 255;
    lut.set([clamp(1.5 - Math.abs(4 * t - 3)) * 255, clamp(1.5 - Math.abs(4 * t - 2)) * 255,
      clamp(1.5 - Math.abs(4 * t - 1)) * 255, clamp((t - 0.08) * 4) * 255], v * 4);
  }
  return lut;
}

/** CSS gradient of the colour map, for the legend. */
export function legendGradient(): string {
  const stops = [0, 0.25, 0.5, 0.75, 1].map((t) => {
    const o = Math.round(t * 255) * 4;
    return `rgb(${JET[o]},${JET[o + 1]},${JET[o + 2]}) ${t * 100}%`;
  });
  return `linear-gradient(to right, ${stops.join(', ')})`;
}
