// One-time setup of Cornerstone3D: rendering (WebGL2, or the CPU path where WebGL is missing), the DICOM image
// loader (its decode workers and codec .wasm files are bundled under /static/viewer/), and the tools.

import { init as initCore } from '@cornerstonejs/core';
import { init as initLoader } from '@cornerstonejs/dicom-image-loader';
import { init as initTools } from '@cornerstonejs/tools';

function hasWebGL2(): boolean {
  try {
    return !!document.createElement('canvas').getContext('webgl2');
  } catch {
    return false;
  }
}

export function initCornerstone(): { cpu: boolean } {
  const cpu = !hasWebGL2();
  initCore({ rendering: { useCPURendering: cpu }, debug: {} });
  initLoader({
    maxWebWorkers: Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1)),
  });
  initTools();
  return { cpu };
}
