// Bundles the worklist, the viewer and the admin pages (curation, registry) into webapp/static/viewer/ with fixed file names, so Django templates
// can name them (`{% static 'viewer/viewer.js' %}`) and whitenoise serves them with the rest of the static files.
import { resolve } from 'node:path';
import { defineConfig } from 'vite';

// Fixed names, so the Django templates can link them; the codecs' .wasm files (which the image loader locates
// with `new URL(..., import.meta.url)`) land in assets/ and load from /static/viewer/assets/ via `base`.
const OUT_DIR = resolve(__dirname, '../webapp/static/viewer');
const assetFileNames = (info: { names?: string[] }) =>
  info.names?.some((n) => n.endsWith('.css')) ? 'assets/lungscope.css' : 'assets/[name][extname]';

export default defineConfig({
  base: '/static/viewer/',
  resolve: {
    // vtk.js's XML I/O (xmlbuilder2) extends Node's EventEmitter: bundle the `events` polyfill, not Vite's empty stub.
    alias: { events: resolve(__dirname, 'node_modules/events/events.js') },
  },
  worker: {
    format: 'es',
    rollupOptions: { output: { entryFileNames: 'workers/[name].js', chunkFileNames: 'workers/[name].js', assetFileNames } },
  },
  build: {
    outDir: OUT_DIR,
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 5000,
    sourcemap: false,
    rollupOptions: {
      input: {
        worklist: resolve(__dirname, 'src/worklist/main.ts'),
        viewer: resolve(__dirname, 'src/viewer/main.ts'),
        curation: resolve(__dirname, 'src/curation/main.ts'),
        registry: resolve(__dirname, 'src/registry/main.ts'),
      },
      output: {
        entryFileNames: '[name].js',
        chunkFileNames: 'chunks/[name].js',
        assetFileNames,
      },
    },
  },
});
