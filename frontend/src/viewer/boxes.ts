// Lesion boxes as annotations of Cornerstone3D's Rectangle ROI tool. The REST API holds the boxes (DICOM pixel
// indices, inclusive, x = column); each visible box is one annotation (UID `lungscope-box-<id>`) in the tool's
// annotation state, created when its slice is shown, in world coordinates. Per-annotation styles: AI proposals
// dashed with their score in the text, accepted, edited and human boxes solid, rejected ones grey and locked.
//
// An annotator edits with the tool itself in box mode: a drag on the image draws a box (ANNOTATION_COMPLETED ->
// POST), a drag on a box's edge moves it and on a corner resizes it (ANNOTATION_MODIFIED, saved when the mouse is
// released -> PATCH with the version), removing the annotation deletes the box (ANNOTATION_REMOVED -> DELETE with
// the version). A stale version (409) reloads the box from the server and says so. Clinicians see the boxes, the
// tool never becomes interactive for them.

import { eventTarget, utilities as csUtils, type Types } from '@cornerstonejs/core';
import {
  annotation as csAnnotation, Enums as ToolEnums, RectangleROITool, utilities as toolUtilities,
  type Types as ToolTypes,
} from '@cornerstonejs/tools';
import { ApiError, api, type Box, type BoxLabel } from '../api';
import { BOX_LABEL_TEXT } from '../ui/format';
import { toast } from '../ui/toast';
import type { CtViewport } from './viewport';

type Annotation = ToolTypes.Annotation;
type AnnotationStyle = Parameters<typeof csAnnotation.config.style.setAnnotationStyles>[1];
/** Inclusive pixel indices [x0, y0, x1, y1]. */
type Rect = [number, number, number, number];

const COLOURS: Record<BoxLabel, string> = { covid_lesion: '#ff9f1c', cap_lesion: '#e056fd', other: '#48dbfb' };
const REJECTED_COLOUR = '#9a9a9a';
const AI_DASH = '6,4';
const VISIBLE = new Set(['proposed', 'accepted', 'rejected']);
const UID_PREFIX = 'lungscope-box-';
const { Events, ChangeTypes } = ToolEnums;
const { state: annotations, selection, locking } = csAnnotation;

export const boxUid = (id: number): string => `${UID_PREFIX}${id}`;

function boxIdOf(uid: string | undefined): number | null {
  return uid?.startsWith(UID_PREFIX) ? Number(uid.slice(UID_PREFIX.length)) : null;
}

export function boxText(box: Box): string {
  const score = box.score != null ? ` ${box.score.toFixed(2)}` : '';
  return `${BOX_LABEL_TEXT[box.label]}${score}${box.status === 'rejected' ? ' (rejected)' : ''}`;
}

/** Per-annotation style overrides; every state (hover, selected, locked) keeps the box's own colour and dash. */
function styleOf(box: Box): AnnotationStyle {
  const colour = box.status === 'rejected' ? REJECTED_COLOUR : COLOURS[box.label];
  return {
    color: colour, colorHighlighted: colour, colorSelected: colour, colorLocked: colour,
    textBoxColor: colour, textBoxColorHighlighted: colour, textBoxColorSelected: colour, textBoxColorLocked: colour,
    lineWidth: '1.5', lineWidthHighlighted: '2.5', lineWidthSelected: '3',
    lineDash: box.provenance === 'ai' ? AI_DASH : '',
    textBoxBackground: 'rgba(0, 0, 0, 0.55)',
  };
}

export class BoxLayer {
  boxes: Box[] = [];
  selectedId: number | null = null;
  newLabel: BoxLabel = 'covid_lesion';
  private editing = false;
  /** Boxes whose annotation the tool moved or resized during the current drag: saved when the mouse is released. */
  private readonly moved = new Set<number>();
  /** Annotations removed here (not by the user): their ANNOTATION_REMOVED must not delete the box. */
  private readonly quietRemovals = new Set<string>();
  private readonly listeners = new Set<() => void>();

  constructor(private readonly view: CtViewport, private readonly studyId: number, readonly canEdit: boolean) {
    view.on('slice', () => this.sync());
    eventTarget.addEventListener(Events.ANNOTATION_SELECTION_CHANGE, this.onSelection);
    if (canEdit) {
      eventTarget.addEventListener(Events.ANNOTATION_COMPLETED, this.onCompleted);
      eventTarget.addEventListener(Events.ANNOTATION_MODIFIED, this.onModified);
      eventTarget.addEventListener(Events.ANNOTATION_REMOVED, this.onRemoved);
      // The tool ends a drag on these; the moved boxes save once, after its own handler ran.
      for (const name of [Events.MOUSE_UP, Events.MOUSE_CLICK]) view.element.addEventListener(name, () => setTimeout(() => this.saveMoved()));
    }
  }

  async load(): Promise<void> {
    this.boxes = await api.boxes(this.studyId);
    this.sync();
    this.redraw();
    this.changed();
  }

  /** Called after any change to the boxes or the selection (the side panel re-renders). */
  onChange(listener: () => void): void { this.listeners.add(listener); }

  private changed(): void {
    this.listeners.forEach((l) => l());
  }

  get mode(): boolean { return this.editing; }

  /** Box mode: the viewport's left button drives the Rectangle ROI tool (see CtViewport.setLeftTool). */
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
    selection.deselectAnnotation();
    this.selectedId = box?.id ?? null;
    if (box) {
      if (annotations.getAnnotation(boxUid(box.id))) selection.setAnnotationSelected(boxUid(box.id), true);
      const index = this.view.instances.findIndex((i) => i.sop_instance_uid === box.sop_instance_uid);
      if (index >= 0 && index !== this.view.index) void this.view.scrollTo(index); // sync() selects it there
    }
    this.redraw();
    this.changed();
  }

  // --- the boxes as annotations --------------------------------------------------------------------------------

  /** Creates or updates the annotations of the current slice's boxes (its geometry is loaded now). */
  private sync(): void {
    const sop = this.view.instance?.sop_instance_uid;
    for (const box of this.boxes) if (box.sop_instance_uid === sop) this.show(box);
  }

  /** Brings a box's annotation in line with the box: created on its slice, updated, or removed once not visible. */
  private show(box: Box): void {
    const uid = boxUid(box.id);
    let annotation = annotations.getAnnotation(uid) as Annotation | undefined;
    if (!VISIBLE.has(box.status)) {
      if (annotation) this.removeQuietly(uid);
      return;
    }
    const imageId = this.view.imageIdAt(this.view.instances.findIndex((i) => i.sop_instance_uid === box.sop_instance_uid));
    if (!annotation) {
      if (imageId !== this.view.viewport.getCurrentImageId()) return; // created when its slice is shown
      annotation = RectangleROITool.createAnnotationForViewport<Annotation>(this.view.viewport, {
        annotationUID: uid, highlighted: false, invalidated: false,
      });
      annotation.data.handles!.points = this.corners(imageId, box);
      annotations.addAnnotation(annotation, this.view.element);
    } else if (!this.moved.has(box.id)) {
      try {
        annotation.data.handles!.points = this.corners(annotation.metadata?.referencedImageId ?? imageId, box);
      } catch { /* that slice's geometry is not cached now: updated when it is shown */ }
    }
    annotation.data.label = boxText(box);
    csAnnotation.config.style.setAnnotationStyles(uid, styleOf(box));
    const locked = box.status === 'rejected' || !this.canEdit;
    if (locking.isAnnotationLocked(uid) !== locked) locking.setAnnotationLocked(uid, locked);
    if (box.id === this.selectedId && !selection.isAnnotationSelected(uid)) selection.setAnnotationSelected(uid, true);
  }

  private removeQuietly(uid: string): void {
    if (!annotations.getAnnotation(uid)) return;
    this.quietRemovals.add(uid);
    annotations.removeAnnotation(uid);
    this.quietRemovals.delete(uid);
    csAnnotation.config.style.setAnnotationStyles(uid, {});
  }

  private redraw(): void {
    toolUtilities.triggerAnnotationRenderForViewportIds([this.view.viewport.id]);
  }

  /**
   * A box's four corners in world coordinates, in the tool's order (top-left, top-right, bottom-left,
   * bottom-right). Image coordinates put pixel i on [i, i+1), so an inclusive box spans x0 .. x1 + 1.
   */
  private corners(imageId: string, box: Pick<Box, 'x0' | 'y0' | 'x1' | 'y1'>): Types.Point3[] {
    const world = (x: number, y: number) => csUtils.imageToWorldCoords(imageId, [x, y]) as Types.Point3;
    return [world(box.x0, box.y0), world(box.x1 + 1, box.y0), world(box.x0, box.y1 + 1), world(box.x1 + 1, box.y1 + 1)];
  }

  /**
   * The inclusive pixel rectangle of an annotation, clamped to the image; null when it has no area. A new drag
   * keeps the pixels under its two corners; an edited box's edges snap to the nearest pixel boundary, and a
   * moved box (same size) pushed past the image's border slides back inside instead of shrinking.
   */
  private rectOf(annotation: Annotation, before?: Box): Rect | null {
    const imageId = annotation.metadata?.referencedImageId;
    const index = this.view.indexOfImageId(imageId);
    if (index < 0) return null;
    const { columns, rows } = this.view.instances[index];
    const pts = annotation.data.handles!.points!.map((p) => csUtils.worldToImageCoords(imageId!, p) as Types.Point2);
    const xs = pts.map((p) => p[0]);
    const ys = pts.map((p) => p[1]);
    let r: Rect;
    if (!before) {
      r = [Math.floor(Math.min(...xs)), Math.floor(Math.min(...ys)), Math.floor(Math.max(...xs)), Math.floor(Math.max(...ys))];
      if (r[2] - r[0] < 1 || r[3] - r[1] < 1) return null;
    } else {
      r = [Math.round(Math.min(...xs)), Math.round(Math.min(...ys)), Math.round(Math.max(...xs)) - 1, Math.round(Math.max(...ys)) - 1];
      if (r[2] < r[0] || r[3] < r[1]) return null;
      if (r[2] - r[0] === before.x1 - before.x0 && r[3] - r[1] === before.y1 - before.y0) {
        const dx = Math.max(-r[0], Math.min(columns - 1 - r[2], 0));
        const dy = Math.max(-r[1], Math.min(rows - 1 - r[3], 0));
        r = [r[0] + dx, r[1] + dy, r[2] + dx, r[3] + dy];
      }
    }
    const cx = (v: number) => Math.max(0, Math.min(columns - 1, v));
    const cy = (v: number) => Math.max(0, Math.min(rows - 1, v));
    r = [cx(r[0]), cy(r[1]), cx(r[2]), cy(r[3])];
    return r[2] >= r[0] && r[3] >= r[1] ? r : null;
  }

  // --- the tool's events -> REST --------------------------------------------------------------------------------

  /** The tool selects a box when the user grabs it; the side panel follows. */
  private readonly onSelection = (evt: Event): void => {
    const { selection: uids } = (evt as ToolTypes.EventTypes.AnnotationSelectionChangeEventType).detail;
    const id = uids.map(boxIdOf).find((i) => i != null) ?? null;
    if (id === this.selectedId) return;
    this.selectedId = id;
    this.changed();
  };

  /** A box drawn with the tool: saved as a human box on the annotation's slice with the chosen label. */
  private readonly onCompleted = (evt: Event): void => {
    const { annotation } = (evt as ToolTypes.EventTypes.AnnotationCompletedEventType).detail;
    if (annotation.metadata?.toolName !== RectangleROITool.toolName || boxIdOf(annotation.annotationUID) != null) return;
    void this.create(annotation);
  };

  private async create(annotation: Annotation): Promise<void> {
    const uid = annotation.annotationUID!;
    const rect = this.rectOf(annotation);
    const instance = this.view.instances[this.view.indexOfImageId(annotation.metadata?.referencedImageId)];
    if (!rect || !instance) {
      this.removeQuietly(uid); // a click, not a drag
      this.redraw();
      return;
    }
    try {
      const box = await api.createBox(this.studyId, {
        sop_instance_uid: instance.sop_instance_uid, x0: rect[0], y0: rect[1], x1: rect[2], y1: rect[3], label: this.newLabel,
      });
      this.removeQuietly(uid); // replaced by the box's own annotation, snapped to its pixels
      this.boxes.push(box);
      selection.deselectAnnotation();
      this.selectedId = box.id;
      this.show(box); // selects it
      toast('Box saved', 'success');
    } catch (err) {
      this.removeQuietly(uid);
      toast(`Could not save the box: ${(err as Error).message}`, 'error');
    }
    this.redraw();
    this.changed();
  }

  private readonly onModified = (evt: Event): void => {
    const { annotation, changeType } = (evt as ToolTypes.EventTypes.AnnotationModifiedEventType).detail;
    const id = boxIdOf(annotation.annotationUID);
    if (id != null && changeType === ChangeTypes.HandlesUpdated) this.moved.add(id);
  };

  /** After a drag: each moved or resized box saves its new rectangle (PATCH with its version). */
  private saveMoved(): void {
    for (const id of [...this.moved]) {
      this.moved.delete(id);
      const box = this.boxes.find((b) => b.id === id);
      const annotation = annotations.getAnnotation(boxUid(id)) as Annotation | undefined;
      if (box && annotation) void this.saveRect(box, annotation);
    }
  }

  private async saveRect(box: Box, annotation: Annotation): Promise<void> {
    const rect = this.rectOf(annotation, box);
    if (!rect || (rect[0] === box.x0 && rect[1] === box.y0 && rect[2] === box.x1 && rect[3] === box.y1)) {
      this.show(box); // back onto its pixels
      this.redraw();
      return;
    }
    const [x0, y0, x1, y1] = rect;
    const before = { ...box };
    Object.assign(box, { x0, y0, x1, y1 }); // optimistic: stays where the user left it, snapped to pixels
    this.show(box);
    this.redraw();
    await this.save(before, () => api.updateBox(before, { x0, y0, x1, y1 }), 'Box saved');
  }

  /** The user removed a box's annotation: delete the box (DELETE with its version). */
  private readonly onRemoved = (evt: Event): void => {
    const uid = (evt as ToolTypes.EventTypes.AnnotationRemovedEventType).detail.annotation.annotationUID;
    if (!uid || this.quietRemovals.has(uid)) return;
    const box = this.boxes.find((b) => b.id === boxIdOf(uid));
    csAnnotation.config.style.setAnnotationStyles(uid, {});
    if (box && box.status !== 'deleted') void this.deleteBox(box);
  };

  private async deleteBox(box: Box): Promise<void> {
    await this.save(box, async () => { await api.deleteBox(box); return { ...box, status: 'deleted' as const }; }, 'Box deleted');
    if (this.selectedId === box.id && this.boxes.find((b) => b.id === box.id)?.status === 'deleted') this.selectedId = null;
    this.changed();
  }

  // --- actions from the side panel and the keyboard --------------------------------------------------------------

  accept(box = this.selected): Promise<void> { return box ? this.save(box, () => api.acceptBox(box), 'Box accepted') : done(); }
  reject(box = this.selected): Promise<void> { return box ? this.save(box, () => api.rejectBox(box), 'Box rejected') : done(); }
  setLabel(label: BoxLabel, box = this.selected): Promise<void> {
    return box ? this.save(box, () => api.updateBox(box, { label }), 'Label saved') : done();
  }

  /** Deletes a box by removing its annotation (the tool's ANNOTATION_REMOVED saves it), or directly off-slice. */
  async remove(box = this.selected): Promise<void> {
    if (!box) return;
    const uid = boxUid(box.id);
    if (annotations.getAnnotation(uid)) {
      annotations.removeAnnotation(uid);
      this.redraw();
    } else {
      await this.deleteBox(box);
    }
  }

  /** Runs a write; on 409 reloads the box and says so; on other errors restores the previous state. */
  private async save(before: Box, write: () => Promise<Box>, message: string): Promise<void> {
    try {
      this.replace(await write());
      toast(message, 'success');
    } catch (err) {
      if (err instanceof ApiError && err.stale) {
        const current = (err.body as { current?: Box | null } | null)?.current;
        this.replace(current ?? (await api.box(before.id).catch(() => ({ ...before, status: 'deleted' as const }))));
        toast('Someone else changed this box meanwhile: reloaded their version, your change was not saved.', 'warning');
      } else {
        this.replace(before);
        toast(`Could not save the box: ${(err as Error).message}`, 'error');
      }
    }
    this.redraw();
    this.changed();
  }

  private replace(box: Box): void {
    const i = this.boxes.findIndex((b) => b.id === box.id);
    if (i >= 0) this.boxes[i] = box;
    else this.boxes.push(box);
    this.show(box);
  }
}

function done(): Promise<void> { return Promise.resolve(); }
