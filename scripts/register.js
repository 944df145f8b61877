// Runs TypeScript scripts (demo, bench, chaos) without a build step: transpiles .ts on require with the project's
// TypeScript (no type check: `npm run typecheck` does that). Usage: node -r ./scripts/register.js file.ts
'use strict';
const fs = require('fs');
const ts = require('typescript');

require.extensions['.ts'] = function (module, filename) {
  const src = fs.readFileSync(filename, 'utf8');
  const out = ts.transpileModule(src, {
    fileName: filename,
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      sourceMap: false,
      inlineSourceMap: true,
    },
  });
  module._compile(out.outputText, filename);
};
