// Lint for the viewer's TypeScript (`npm run lint`, part of `make lint`): ESLint's and typescript-eslint's recommended
// rules; the type checker itself runs in `npm run typecheck`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['src/api-schema.d.ts'] },
  js.configs.recommended,
  tseslint.configs.recommended,
);
