// Lesion boxes on a canvas layer over the image: AI boxes dashed with their score, human and accepted boxes solid.
// In box mode an annotator draws (drag on empty image), moves (drag inside) and resizes (drag a corner); every
// change saves through the REST API in the slice's DICOM pixel indices (inclusive, x = column).

import { ApiError, api, type Box, type BoxLabel } from '../api';
import { BOX_LABEL_TEXT } from '../ui/format';
import { toast } from '../ui/toast';
import { applyTransform, OverlayCanvas } from './layer';
import type { CtViewport, PixelTransform } from './viewport';

const COLOURS: Record<BoxLabel, string> = { covid_lesion: '#ff9f1c', cap_lesion: '#e056fd', other: '#48dbfb' };
const HANDLE_CSS_PX = 7;
const VISIBLE = new Set(['proposed', 'accepted', 'rejected']);

type Drag =
  | { kind: 'draw'; start: [number, number]; now: [number, number] }
  | { kind: 'move'; box: Box; start: [number, number]; now: [number, number] }
  | { kind: 'resize'; box: Box; corner: 0 | 1 | 2 | 3; now: [number, number] };

export class BoxLayer {
  boxes: Box[] = [];
  selectedId: number | null = null;
  newLabel: BoxLabel = 'covid_lesion';
  private editing = false;
  private drag: Drag | null = null;
  private readonly layer: OverlayCanvas;
  private readonly listeners = new Set<() => void>();

  constructor(private readonly view: CtViewport, private readonly studyId: number, host: HTMLElement, readonly canEdit: boolean) {
    this.layer = new OverlayCanvas(host, 'boxes-layer');
    view.on('render', () => this.draw());
    if (canEdit) this.bindPointer();
  }

  async load(): Promise<void> {
    this.boxes = await api.boxes(this.studyId);
    this.changed();
  }

  /** Called after any change to the boxes or the selection (the side panel re-renders). */
  onChange(listener: () => void): void { this.listeners.add(listener); }

  private changed(): void {
    this.draw();
    this.listeners.forEach((l) => l());
  }

  get mode(): boolean { return this.editing; }

  setMode(on: boolean): void {
    this.editing = on && this.canEdit;
    this.view.element.classList.toggle('box-mode', this.editing);
    this.changed();
  }

  get selected(): Box | undefined { return this.boxes.find((b) => b.id === this.selectedId); }

  visible(): Box[] { return this.boxes.filter((b) => VISIBLE.has(b.status)); }

  onSlice(): Box[] {
    const sop = this.view.instance?.sop_instance_uid;
    return this.visible().filter((b) => b.sop_instance_uid === sop);
  }

  select(box: Box | null): void {
    this.selectedId = box?.id ?? null;
    if (box) {
      const index = this.view.instances.findIndex((i) => i.sop_instance_uid === box.sop_instance_uid);
      if (index >= 0 && index !== this.view.index) void this.view.scrollTo(index);
    }
    this.changed();
  }

  // --- REST round trips -------------------------------------------------------------------------------------

  accept(box = this.selected): Promise<void> { return box ? this.save(box, () => api.acceptBox(box), 'Box accepted') : done(); }
  reject(box = this.selected): Promise<void> { return box ? this.save(box, () => api.rejectBox(box), 'Box rejected') : done(); }
  setLabel(label: BoxLabel, box = this.selected): Promise<void> {
    return box ? this.save(box, () => api.updateBox(box, { label }), 'Label saved') : done();
  }

  async remove(box = this.selected): Promise<void> {
    if (!box) return;
    await this.save(box, async () => { await api.deleteBox(box); return { ...box, status: 'deleted' as const }; }, 'Box deleted');
    if (this.selectedId === box.id) this.selectedId = null;
    this.changed();
  }

  private async create(rect: [number, number, number, number]): Promise<void> {
    const sop = this.view.instance.sop_instance_uid;
    try {
      const box = await api.createBox(this.studyId, { sop_instance_uid: sop, x0: rect[0], y0: rect[1], x1: rect[2], y1: rect[3], label: this.newLabel });
      this.boxes.push(box);
      this.selectedId = box.id;
      toast('Box saved', 'success');
    } catch (err) {
      toast(`Could not save the box: ${(err as Error).message}`, 'error');
    }
    this.changed();
  }

  private move(box: Box, rect: [number, number, number, number]): Promise<void> {
    const [x0, y0, x1, y1] = rect;
    if (x0 === box.x0 && y0 === box.y0 && x1 === box.x1 && y1 === box.y1) return done();
    const before = { ...box };
    Object.assign(box, { x0, y0, x1, y1 }); // optimistic: draw where the user left it
    return this.save(before, () => api.updateBox(before, { x0, y0, x1, y1 }), 'Box saved');
  }

  /** Runs a write; on 409 reloads the box and says so; on other errors restores the previous state. */
  private async save(before: Box, write: () => Promise<Box>, message: string): Promise<void> {
    try {
      this.replace(await write());
      toast(message, 'success');
    } catch (err) {
      if (err instanceof ApiError && err.stale) {
        this.replace(await api.box(before.id));
        toast('Someone else changed this box meanwhile: reloaded their version, your change was not saved.', 'warning');
      } else {
        this.replace(before);
        toast(`Could not save the box: ${(err as Error).message}`, 'error');
      }
    }
    this.changed();
  }

  private replace(box: Box): void {
    const i = this.boxes.findIndex((b) => b.id === box.id);
    if (i >= 0) this.boxes[i] = box;
    else this.boxes.push(box);
  }

  // --- pointer interaction ----------------------------------------------------------------------------------

  private bindPointer(): void {
    const el = this.view.element;
    // Capture phase, before the Cornerstone tools; preventDefault on pointerdown suppresses their mousedown.
    el.addEventListener('pointerdown', (e) => {
      if (!this.editing || e.button !== 0) return;
      e.preventDefault();
      e.stopPropagation();
      this.startDrag(this.pixelAt(e));
      const move = (ev: PointerEvent) => { if (this.drag) { this.drag.now = this.pixelAt(ev); this.draw(); } };
      const up = (ev: PointerEvent) => {
        window.removeEventListener('pointermove', move);
        window.removeEventListener('pointerup', up);
        if (this.drag) this.drag.now = this.pixelAt(ev);
        void this.endDrag();
      };
      window.addEventListener('pointermove', move);
      window.addEventListener('pointerup', up);
    }, { capture: true });
  }

  private pixelAt(e: PointerEvent): [number, number] {
    const r = this.view.element.getBoundingClientRect();
    return this.view.canvasToPixel(e.clientX - r.left, e.clientY - r.top);
  }

  private startDrag(p: [number, number]): void {
    const t = this.view.pixelTransform();
    const tolerance = t ? HANDLE_CSS_PX / Math.hypot(t.a, t.b) : 1;
    const selected = this.selected;
    if (selected && this.onSlice().includes(selected)) {
      const corner = corners(selected).findIndex(([x, y]) => Math.abs(x - p[0]) <= tolerance && Math.abs(y - p[1]) <= tolerance);
      if (corner >= 0) { this.drag = { kind: 'resize', box: selected, corner: corner as 0 | 1 | 2 | 3, now: p }; return; }
    }
    const hit = this.onSlice().filter((b) => b.status !== 'rejected').reverse()
      .find((b) => p[0] >= b.x0 && p[0] < b.x1 + 1 && p[1] >= b.y0 && p[1] < b.y1 + 1);
    if (hit) {
      this.selectedId = hit.id;
      this.drag = { kind: 'move', box: hit, start: p, now: p };
      this.changed();
      return;
    }
    this.drag = { kind: 'draw', start: p, now: p };
  }

  private async endDrag(): Promise<void> {
    const drag = this.drag;
    this.drag = null;
    if (!drag) return;
    const rect = this.dragRect(drag);
    if (drag.kind === 'draw') {
      if (rect[2] - rect[0] >= 1 && rect[3] - rect[1] >= 1) await this.create(rect);
      else { this.selectedId = null; this.changed(); }
    } else {
      await this.move(drag.box, rect);
    }
  }

  /** The rectangle a drag describes, in inclusive pixel indices clamped to the image. */
  private dragRect(drag: Drag): [number, number, number, number] {
    const { columns, rows } = this.view.instance;
    const clampX = (v: number) => Math.max(0, Math.min(columns - 1, v));
    const clampY = (v: number) => Math.max(0, Math.min(rows - 1, v));
    if (drag.kind === 'draw') {
      const [a, b] = [drag.start, drag.now];
      return [clampX(Math.floor(Math.min(a[0], b[0]))), clampY(Math.floor(Math.min(a[1], b[1]))),
        clampX(Math.floor(Math.max(a[0], b[0]))), clampY(Math.floor(Math.max(a[1], b[1])))];
    }
    const b = drag.box;
    if (drag.kind === 'move') {
      const dx = Math.max(-b.x0, Math.min(columns - 1 - b.x1, Math.round(drag.now[0] - drag.start[0])));
      const dy = Math.max(-b.y0, Math.min(rows - 1 - b.y1, Math.round(drag.now[1] - drag.start[1])));
      return [b.x0 + dx, b.y0 + dy, b.x1 + dx, b.y1 + dy];
    }
    // resize: the dragged corner follows the pointer, the opposite one stays
    const opposite = corners(b)[(drag.corner + 2) % 4];
    const x = Math.round(drag.now[0]);
    const y = Math.round(drag.now[1]);
    const [ox, oy] = opposite;
    return [clampX(Math.min(x, ox)), clampY(Math.min(y, oy)), clampX(Math.max(x, ox) - 1), clampY(Math.max(y, oy) - 1)];
  }

  // --- drawing ----------------------------------------------------------------------------------------------

  draw(): void {
    const boxes = this.onSlice();
    this.layer.canvas.dataset.boxes = String(boxes.length);
    const t = this.layer.begin(this.view, boxes.length > 0 || this.drag?.kind === 'draw');
    if (!t) return;
    const ctx = this.layer.ctx;
    for (const box of boxes) {
      const rect = this.drag && this.drag.kind !== 'draw' && this.drag.box.id === box.id ? this.dragRect(this.drag) : [box.x0, box.y0, box.x1, box.y1];
      this.drawBox(t, box, rect as [number, number, number, number]);
    }
    if (this.drag?.kind === 'draw') {
      const r = this.dragRect(this.drag);
      this.layer.useCss();
      ctx.setLineDash([]);
      ctx.strokeStyle = COLOURS[this.newLabel];
      ctx.lineWidth = 1.5;
      strokeRect(ctx, t, r);
    }
  }

  private drawBox(t: PixelTransform, box: Box, r: [number, number, number, number]): void {
    const ctx = this.layer.ctx;
    const selected = box.id === this.selectedId;
    this.layer.useCss();
    ctx.globalAlpha = box.status === 'rejected' ? 0.35 : 1;
    ctx.strokeStyle = box.status === 'rejected' ? '#999' : COLOURS[box.label];
    ctx.lineWidth = selected ? 2.5 : 1.5;
    ctx.setLineDash(box.provenance === 'ai' ? [6, 4] : []);
    strokeRect(ctx, t, r);
    ctx.setLineDash([]);
    const [lx, ly] = applyTransform(t, r[0], r[1]);
    const text = `${BOX_LABEL_TEXT[box.label]}${box.score != null ? ` ${box.score.toFixed(2)}` : ''}${box.status === 'rejected' ? ' (rejected)' : ''}`;
    ctx.font = '12px system-ui, sans-serif';
    ctx.fillStyle = 'rgba(0,0,0,0.6)';
    ctx.fillRect(lx, ly - 16, ctx.measureText(text).width + 6, 15);
    ctx.fillStyle = ctx.strokeStyle;
    ctx.fillText(text, lx + 3, ly - 4);
    if (selected && this.editing) {
      for (const [x, y] of corners({ x0: r[0], y0: r[1], x1: r[2], y1: r[3] })) {
        const [cx, cy] = applyTransform(t, x, y);
        ctx.fillRect(cx - 4, cy - 4, 8, 8);
      }
    }
    ctx.globalAlpha = 1;
  }
}

/** The four corners of a box in continuous pixel coordinates: top-left, top-right, bottom-right, bottom-left. */
function corners(b: Pick<Box, 'x0' | 'y0' | 'x1' | 'y1'>): [number, number][] {
  return [[b.x0, b.y0], [b.x1 + 1, b.y0], [b.x1 + 1, b.y1 + 1], [b.x0, b.y1 + 1]];
}

function strokeRect(ctx: CanvasRenderingContext2D, t: PixelTransform, r: [number, number, number, number]): void {
  const pts = corners({ x0: r[0], y0: r[1], x1: r[2], y1: r[3] }).map(([x, y]) => applyTransform(t, x, y));
  ctx.beginPath();
  pts.forEach(([x, y], i) => (i ? ctx.lineTo(x, y) : ctx.moveTo(x, y)));
  ctx.closePath();
  ctx.stroke();
}

function done(): Promise<void> { return Promise.resolve(); }
