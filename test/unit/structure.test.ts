// The layers of lib/ and the size of its functions, checked on every run: lower layers never import upper ones, no
// file imports itself back through others, no function outgrows a screenful or two. The checker is pure (source text
// in, findings out) and is itself tested on small made-up trees below.
import * as path from 'path';
import {
  type Sources,
  describeCycle,
  describeFunction,
  functionLengths,
  importCycles,
  importGraph,
  layerViolations,
  longFunctions,
  readSources,
} from '../helpers/structure';

/** Which layers a layer may import (itself included): express -> modes -> memcached -> core; transcoders -> core. */
const LAYERS = {
  core: ['core'],
  transcoders: ['transcoders', 'core'],
  memcached: ['memcached', 'core'],
  modes: ['modes', 'memcached', 'core', 'transcoders'],
  express: ['express', 'modes', 'memcached', 'core', 'transcoders'],
  index: ['express', 'modes', 'memcached', 'core', 'transcoders'],
} as const;

const MAX_FUNCTION_LINES = 100;

// Known offenders, in files being rewritten by another change. Each entry must still match: once its file is fixed
// the test fails until the entry is removed, so this list only shrinks.
const KNOWN_LAYER_VIOLATIONS: string[] = [];
const KNOWN_CYCLES: string[] = [];
const KNOWN_LONG_FUNCTIONS: string[] = [];

const root = path.join(__dirname, '../..');
const lib = readSources(root, 'lib');
const graph = importGraph(lib);
const filesOf = (cycle: string) => [...new Set(cycle.split(' -> '))].sort();

describe('lib/', () => {
  it('reads every file of every layer', () => {
    const layers = new Set(Object.keys(lib).map((f) => f.split('/')[1]));
    expect([...layers].sort()).toEqual(['core', 'express', 'index.ts', 'memcached', 'modes', 'transcoders']);
    expect(graph.get('lib/memcached/node-client.ts')).toEqual(
      expect.arrayContaining(['lib/memcached/framing.ts', 'lib/memcached/keys.ts']),
    );
  });

  it('imports only down the layers', () => {
    const found = layerViolations(graph, LAYERS);
    const known = (v: string) => KNOWN_LAYER_VIOLATIONS.some((k) => v.startsWith(`${k} `));
    expect(found.filter((v) => !known(v))).toEqual([]);
    expect(KNOWN_LAYER_VIOLATIONS.filter((k) => !found.some((v) => v.startsWith(`${k} `)))).toEqual([]);
  });

  it('has no import cycles (type-only imports included)', () => {
    const found = importCycles(graph);
    // A known cycle matches the knot of exactly its files: a knot that grew is a new finding.
    const known = (files: string[]) => KNOWN_CYCLES.some((k) => filesOf(k).join() === files.join());
    expect(found.filter((c) => !known(c.files)).map(describeCycle)).toEqual([]);
    expect(KNOWN_CYCLES.filter((k) => !found.some((c) => c.files.join() === filesOf(k).join()))).toEqual([]);
  });

  it('keeps the Store thin: lib/express/store.ts is at most 400 lines', () => {
    expect(lib['lib/express/store.ts'].split('\n').length).toBeLessThanOrEqual(400);
  });

  it(`has no function longer than ${MAX_FUNCTION_LINES} lines`, () => {
    const found = longFunctions(lib, MAX_FUNCTION_LINES);
    const known = (f: { file: string; name: string }) => KNOWN_LONG_FUNCTIONS.includes(`${f.file} ${f.name}`);
    expect(found.filter((f) => !known(f)).map(describeFunction)).toEqual([]);
    expect(KNOWN_LONG_FUNCTIONS.filter((k) => !found.some((f) => `${f.file} ${f.name}` === k))).toEqual([]);
  });
});

describe('the structure checker', () => {
  const tree: Sources = {
    'lib/index.ts': "export { a } from './core/a';\nexport * from './express';",
    'lib/core/a.ts': "import { b } from '../memcached/b';\nexport const a = b;",
    'lib/memcached/b.ts': 'export const b = 1;',
    'lib/memcached/c.ts': "import type { X } from '../express';\nexport type C = X;",
    'lib/memcached/d.ts': "import e = require('../modes/e');\nexport const d = () => import('../express/index');",
    'lib/modes/e.ts': "export const e = require('../express/index');\nexport type F = import('./f').F;",
    'lib/modes/f.ts': "import { e } from './e';\nexport type F = typeof e;",
    'lib/transcoders/t.ts': "export { b } from '../memcached/b';\nimport * as fs from 'fs';",
    'lib/express/index.ts': "import { b } from '../memcached/b';\nexport type X = 1;",
    'lib/stray.ts': 'export {};',
  };

  it('follows every kind of import, type-only ones too, to files of the tree', () => {
    const g = importGraph(tree);
    expect(Object.fromEntries(g)).toEqual({
      'lib/index.ts': ['lib/core/a.ts', 'lib/express/index.ts'],
      'lib/core/a.ts': ['lib/memcached/b.ts'],
      'lib/memcached/b.ts': [],
      'lib/memcached/c.ts': ['lib/express/index.ts'],
      'lib/memcached/d.ts': ['lib/express/index.ts', 'lib/modes/e.ts'],
      'lib/modes/e.ts': ['lib/express/index.ts', 'lib/modes/f.ts'],
      'lib/modes/f.ts': ['lib/modes/e.ts'],
      'lib/transcoders/t.ts': ['lib/memcached/b.ts'],
      'lib/express/index.ts': ['lib/memcached/b.ts'],
      'lib/stray.ts': [],
    });
  });

  it('names every import against the layers, and a file in no layer', () => {
    expect(layerViolations(importGraph(tree), LAYERS)).toEqual([
      'lib/core/a.ts -> lib/memcached/b.ts (core may not import memcached)',
      'lib/memcached/c.ts -> lib/express/index.ts (memcached may not import express)',
      'lib/memcached/d.ts -> lib/express/index.ts (memcached may not import express)',
      'lib/memcached/d.ts -> lib/modes/e.ts (memcached may not import modes)',
      'lib/modes/e.ts -> lib/express/index.ts (modes may not import express)',
      'lib/transcoders/t.ts -> lib/memcached/b.ts (transcoders may not import memcached)',
      'lib/stray.ts is in no layer (core, transcoders, memcached, modes, express, index)',
    ]);
  });

  it('finds each knot of cycles once, type-only links included, and none in a tree without', () => {
    expect(importCycles(importGraph(tree))).toEqual([
      { cycle: 'lib/modes/e.ts -> lib/modes/f.ts -> lib/modes/e.ts', files: ['lib/modes/e.ts', 'lib/modes/f.ts'] },
    ]);
    const cycles = importCycles(
      importGraph({
        'lib/a.ts': "import type { B } from './b';",
        'lib/b.ts': "import type { C } from './c';\nimport { D } from './d';",
        'lib/c.ts': "export type { A } from './a';",
        'lib/d.ts': "import { A } from './a';",
        'lib/self.ts': "import { s } from './self';",
        'lib/free.ts': "import { a } from './a';",
      }),
    );
    expect(cycles.map(describeCycle).sort()).toEqual([
      'lib/a.ts -> lib/b.ts -> lib/c.ts -> lib/a.ts (with lib/d.ts in the same knot)',
      'lib/self.ts -> lib/self.ts',
    ]);
    const { 'lib/modes/f.ts': _f, ...acyclic } = tree;
    expect(importCycles(importGraph(acyclic))).toEqual([]);
  });

  it('measures every kind of function by its lines, and names it', () => {
    const body = (n: number) => Array.from({ length: n - 2 }, (_, i) => `  x${i}();`).join('\n');
    const source = [
      `export function long() {\n${body(101)}\n}`,
      `export function fits() {\n${body(100)}\n}`,
      `const arrow = () => {\n${body(101)}\n};`,
      `class K {\n  method() {\n${body(101)}\n  }\n  constructor() {\n${body(101)}\n  }\n  private readonly field = function () {\n${body(101)}\n  };\n}`,
      `run(function () {\n${body(101)}\n});`,
      `export function outer() {\n  const inner = (a: number) => {\n${body(101)}\n  };\n}`,
    ].join('\n');
    expect(longFunctions({ 'lib/x.ts': source }, 100).map((f) => f.name)).toEqual([
      'long',
      'arrow',
      'K.method',
      'K.constructor',
      'K.field',
      '(anonymous)',
      'outer',
      'outer > inner',
    ]);
    const [long] = functionLengths({ 'lib/x.ts': source });
    expect(describeFunction(long)).toBe('lib/x.ts:1 long (101 lines)');
    expect(functionLengths({ 'lib/x.ts': source }).find((f) => f.name === 'fits')?.lines).toBe(100);
  });
});
