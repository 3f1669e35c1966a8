// The stack viewport: image ids from the app's WADO-URI, mouse tools (W/L, pan, zoom, wheel scroll, the Rectangle
// ROI tool for lesion boxes), presets, prefetch of the whole stack, and the image<->canvas transforms the overlay
// layers draw with.

import { Enums, RenderingEngine, utilities, type Types } from '@cornerstonejs/core';
import {
  addTool, cancelActiveManipulations, Enums as ToolEnums, PanTool, RectangleROITool, StackScrollTool, ToolGroupManager,
  WindowLevelTool, ZoomTool, utilities as toolUtilities,
} from '@cornerstonejs/tools';
import type { InstanceRef } from '../api';

export const PRESETS = {
  lung: { label: 'Lung', width: 1500, level: -600 },
  mediastinum: { label: 'Mediastinum', width: 400, level: 40 },
  bone: { label: 'Bone', width: 2000, level: 300 },
} as const;
export type PresetName = keyof typeof PRESETS;

const LEFT_TOOLS = { wl: WindowLevelTool, pan: PanTool, zoom: ZoomTool } as const;
/** What the left mouse button does; 'box' draws, moves and resizes lesion boxes with the Rectangle ROI tool. */
export type LeftTool = keyof typeof LEFT_TOOLS | 'box';
export const BOX_TOOL = RectangleROITool.toolName;

const ENGINE_ID = 'lungscope';
const VIEWPORT_ID = 'ct';
const TOOL_GROUP_ID = 'ct-tools';

export function imageIdFor(studyUid: string, seriesUid: string, sopUid: string): string {
  const q = new URLSearchParams({
    requestType: 'WADO', studyUID: studyUid, seriesUID: seriesUid, objectUID: sopUid, contentType: 'application/dicom',
  });
  return `wadouri:${location.origin}/wado?${q}`;
}

/** Affine map from image pixel coordinates (x = column, y = row; pixel i spans [i, i+1)) to canvas CSS pixels. */
export interface PixelTransform { a: number; b: number; c: number; d: number; e: number; f: number }

export class CtViewport {
  readonly element: HTMLDivElement;
  readonly viewport: Types.IStackViewport;
  readonly instances: InstanceRef[];
  private readonly imageIds: string[];
  private readonly indexByImageId: Map<string, number>;
  private preset: PresetName = 'lung';
  /** The window last chosen (a preset, a W/L drag), which every slice is shown in (see keepWindow). */
  private chosenWindow: Types.VOIRange | null = null;
  leftTool: LeftTool = 'wl';

  constructor(element: HTMLDivElement, studyUid: string, seriesUid: string, instances: InstanceRef[]) {
    this.element = element;
    this.instances = instances;
    this.imageIds = instances.map((i) => imageIdFor(studyUid, seriesUid, i.sop_instance_uid));
    this.indexByImageId = new Map(this.imageIds.map((id, i) => [id, i]));
    const engine = new RenderingEngine(ENGINE_ID);
    engine.enableElement({ viewportId: VIEWPORT_ID, type: Enums.ViewportType.STACK, element, defaultOptions: { background: [0, 0, 0] } });
    this.viewport = engine.getViewport(VIEWPORT_ID) as Types.IStackViewport;
    element.addEventListener('contextmenu', (e) => e.preventDefault());
    element.addEventListener(Enums.Events.VOI_MODIFIED, (e) => {
      this.chosenWindow = { ...(e as CustomEvent<Types.EventTypes.VoiModifiedEventDetail>).detail.range };
    });
    element.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => queueMicrotask(() => this.keepWindow()));
    this.setupTools();
    new ResizeObserver(() => engine.resize(true, true)).observe(element);
  }

  private setupTools(): void {
    [WindowLevelTool, PanTool, ZoomTool, StackScrollTool, RectangleROITool].forEach((tool) => addTool(tool));
    const group = ToolGroupManager.createToolGroup(TOOL_GROUP_ID)!;
    Object.values(LEFT_TOOLS).forEach((tool) => group.addTool(tool.toolName));
    group.addTool(StackScrollTool.toolName);
    group.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Wheel }] });
    // Lesion boxes: no pixel statistics (each box's text is its label and score, kept in the annotation's data.label).
    group.addTool(BOX_TOOL, {
      calculateStats: false,
      getTextLines: (data: { label?: string }) => (data.label ? data.label.split('\n') : []),
    });
    group.setToolEnabled(BOX_TOOL); // drawn, not interactive, until box mode
    group.addViewport(VIEWPORT_ID, ENGINE_ID);
    this.setLeftTool('wl');
  }

  /**
   * The left button's tool; the middle button always pans and the right one zooms (as in OHIF). Outside box mode
   * the Rectangle ROI tool only draws (enabled): a W/L drag that starts on a box's edge must not move the box.
   */
  setLeftTool(name: LeftTool): void {
    const group = ToolGroupManager.getToolGroup(TOOL_GROUP_ID)!;
    const { Primary, Auxiliary, Secondary } = ToolEnums.MouseBindings;
    const fixed: Record<keyof typeof LEFT_TOOLS, number[]> = { wl: [], pan: [Auxiliary], zoom: [Secondary] };
    if (this.leftTool === 'box' && name !== 'box') cancelActiveManipulations(this.element); // a box half drawn
    for (const [key, tool] of Object.entries(LEFT_TOOLS) as [keyof typeof LEFT_TOOLS, typeof WindowLevelTool][]) {
      const buttons = key === name ? [...fixed[key], Primary] : fixed[key];
      group.setToolPassive(tool.toolName, { removeAllBindings: true });
      if (buttons.length) group.setToolActive(tool.toolName, { bindings: buttons.map((mouseButton) => ({ mouseButton })) });
    }
    if (name === 'box') group.setToolActive(BOX_TOOL, { bindings: [{ mouseButton: Primary }] });
    else group.setToolEnabled(BOX_TOOL);
    this.leftTool = name;
  }

  async load(index: number): Promise<void> {
    await this.viewport.setStack(this.imageIds, index);
    this.applyPreset(this.preset);
    toolUtilities.stackPrefetch.enable(this.element);
  }

  get count(): number { return this.imageIds.length; }
  get index(): number { return this.viewport.getCurrentImageIdIndex(); }
  get instance(): InstanceRef { return this.instances[this.index]; }

  /** The Cornerstone image id of a slice (what annotations reference), and back. */
  imageIdAt(index: number): string { return this.imageIds[index]; }
  indexOfImageId(imageId: string | undefined): number { return imageId ? this.indexByImageId.get(imageId) ?? -1 : -1; }

  scrollTo(index: number): Promise<string> {
    return this.viewport.setImageIdIndex(Math.max(0, Math.min(this.count - 1, index)));
  }

  scrollBy(delta: number): Promise<string> { return this.scrollTo(this.index + delta); }

  applyPreset(name: PresetName): void {
    const { width, level } = PRESETS[name];
    this.preset = name;
    this.viewport.setProperties({ voiRange: utilities.windowLevel.toLowHighRange(width, level) });
    this.viewport.render();
  }

  /**
   * Put the chosen window back after a new slice is displayed. Cornerstone's CPU path (no hardware WebGL2, as in
   * the browser tests) resets the viewport's VOI range, what getProperties reports and a W/L drag starts from, to
   * each new image's own DICOM window, so the readout and the next drag used the series' window (RICORD's W 400
   * L 40) while the Lung button was lit. A microtask: that path fires STACK_NEW_IMAGE before it resets the range.
   */
  private keepWindow(): void {
    const now = this.viewport.getProperties().voiRange;
    const chosen = this.chosenWindow;
    if (chosen && (!now || now.lower !== chosen.lower || now.upper !== chosen.upper)) {
      this.viewport.setProperties({ voiRange: chosen }, true);
    }
  }

  /** The preset whose window is the one shown, or null (the series' own window, a W/L drag). */
  shownPreset(): PresetName | null {
    const { width, level } = this.windowLevel();
    const match = (Object.entries(PRESETS) as [PresetName, (typeof PRESETS)[PresetName]][])
      .find(([, p]) => p.width === Math.round(width) && p.level === Math.round(level));
    return match ? match[0] : null;
  }

  /** Window and level now shown (after any drag). */
  windowLevel(): { width: number; level: number } {
    const range = this.viewport.getProperties().voiRange;
    if (!range) return { width: 0, level: 0 };
    const { windowWidth, windowCenter } = utilities.windowLevel.toWindowLevel(range.lower, range.upper);
    return { width: windowWidth, level: windowCenter };
  }

  reset(): void {
    this.viewport.resetCamera();
    this.applyPreset(this.preset);
  }

  pixelTransform(): PixelTransform | null {
    const imageId = this.viewport.getCurrentImageId();
    if (!imageId) return null;
    const toCanvas = (x: number, y: number) => this.viewport.worldToCanvas(utilities.imageToWorldCoords(imageId, [x, y]) as Types.Point3);
    const o = toCanvas(0, 0);
    const px = toCanvas(1, 0);
    const py = toCanvas(0, 1);
    return { a: px[0] - o[0], b: px[1] - o[1], c: py[0] - o[0], d: py[1] - o[1], e: o[0], f: o[1] };
  }

  on(event: 'slice' | 'render', handler: () => void): void {
    const name = event === 'slice' ? Enums.Events.STACK_NEW_IMAGE : Enums.Events.IMAGE_RENDERED;
    this.element.addEventListener(name, handler);
  }
}
