// Runs TypeScript scripts (demo, bench, chaos) without a build step: transpiles .ts on require with the project's
// TypeScript (no type check: `npm run typecheck` does that). Usage: node -r ./scripts/register.js file.ts
'use strict';
const fs = require('fs');
const ts = require('typescript');

/** TypeScript source -> CommonJS JavaScript, as every script here runs it; `sourceMap: false` for long-running servers. */
function transpile(src, filename, sourceMap = true) {
  return ts.transpileModule(src, {
    fileName: filename,
    compilerOptions: {
      module: ts.ModuleKind.CommonJS,
      target: ts.ScriptTarget.ES2022,
      esModuleInterop: true,
      sourceMap: false,
      inlineSourceMap: sourceMap,
    },
  }).outputText;
}

require.extensions['.ts'] = (module, filename) => {
  module._compile(transpile(fs.readFileSync(filename, 'utf8'), filename), filename);
};

module.exports = { transpile };
