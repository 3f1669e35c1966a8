// One-time setup of Cornerstone3D: rendering (WebGL2 on a GPU, else the CPU path), the DICOM image loader (its
// decode workers and codec .wasm files are bundled under /static/viewer/), and the tools.

import { init as initCore } from '@cornerstonejs/core';
import { init as initLoader } from '@cornerstonejs/dicom-image-loader';
import { init as initTools } from '@cornerstonejs/tools';

/** A hardware WebGL2 context? Software rasterisers (SwiftShader, llvmpipe) are slower than the CPU path for a stack. */
function hasGpuWebGL2(): boolean {
  try {
    const gl = document.createElement('canvas').getContext('webgl2');
    if (!gl) return false;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    const renderer = String(info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
    gl.getExtension('WEBGL_lose_context')?.loseContext();
    return !/swiftshader|llvmpipe|software|softpipe/i.test(renderer);
  } catch {
    return false;
  }
}

export function initCornerstone(): { cpu: boolean } {
  const cpu = !hasGpuWebGL2();
  initCore({ rendering: { useCPURendering: cpu }, debug: {} });
  initLoader({
    maxWebWorkers: Math.max(1, Math.min(4, (navigator.hardwareConcurrency || 2) - 1)),
  });
  initTools();
  return { cpu };
}
