// Minimal require hook: `node --require ./bench/register.js bench/x.ts` transpiles .ts files on load with the
// installed `typescript` (no type checking; `npm run typecheck` does that). Used by the benchmark scripts.
'use strict';
const fs = require('fs');
const ts = require('typescript');

const compilerOptions = { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022, esModuleInterop: true, sourceMap: false };

require.extensions['.ts'] = function (module, filename) {
  const { outputText } = ts.transpileModule(fs.readFileSync(filename, 'utf8'), { compilerOptions, fileName: filename });
  module._compile(outputText, filename);
};
