// Reads the import graph and the function lengths of a set of TypeScript files (paths relative to the repository,
// e.g. `lib/memcached/nodes.ts`), with the TypeScript parser: pure functions over { path: source }, so the checks
// run on lib/ and on small made-up examples alike.
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';

export type Sources = Record<string, string>;

/** Every .ts file below `dir` (relative to `root`), read. */
export function readSources(root: string, dir: string): Sources {
  const out: Sources = {};
  const walk = (rel: string) => {
    for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = path.posix.join(rel, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith('.ts')) out[child] = fs.readFileSync(path.join(root, child), 'utf8');
    }
  };
  walk(dir);
  return out;
}

function parse(file: string, source: string): ts.SourceFile {
  return ts.createSourceFile(file, source, ts.ScriptTarget.ES2022, true, ts.ScriptKind.TS);
}

/** Every module a file names: imports and re-exports (type-only too), `import x = require()`, require() and import(). */
function specifiers(sf: ts.SourceFile): string[] {
  const out: string[] = [];
  const visit = (node: ts.Node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node))
      && node.moduleSpecifier
      && ts.isStringLiteral(node.moduleSpecifier)
    ) {
      out.push(node.moduleSpecifier.text);
    } else if (ts.isExternalModuleReference(node) && ts.isStringLiteral(node.expression)) {
      out.push(node.expression.text);
    } else if (
      ts.isCallExpression(node)
      && node.arguments.length === 1
      && ts.isStringLiteral(node.arguments[0])
      && (node.expression.kind === ts.SyntaxKind.ImportKeyword
        || (ts.isIdentifier(node.expression) && node.expression.text === 'require'))
    ) {
      out.push(node.arguments[0].text);
    } else if (
      ts.isImportTypeNode(node)
      && ts.isLiteralTypeNode(node.argument)
      && ts.isStringLiteral(node.argument.literal)
    ) {
      out.push(node.argument.literal.text);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

/** file -> the files among `sources` it imports (relative specifiers resolved as `x.ts` or `x/index.ts`). */
export function importGraph(sources: Sources): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const [file, source] of Object.entries(sources)) {
    const targets = new Set<string>();
    for (const spec of specifiers(parse(file, source))) {
      if (!spec.startsWith('.')) continue;
      const base = path.posix.normalize(path.posix.join(path.posix.dirname(file), spec));
      const target = [base, `${base}.ts`, `${base}/index.ts`].find((c) => c in sources);
      if (target) targets.add(target);
    }
    graph.set(file, [...targets].sort());
  }
  return graph;
}

/** Which layers each layer may import (itself included); a file's layer is its folder below `lib/`. */
export type LayerRules = Record<string, readonly string[]>;

export function layerOf(file: string): string {
  const parts = file.split('/');
  // lib/index.ts is the public surface; other files directly in lib/ belong to no layer.
  if (parts.length === 2) return parts[1] === 'index.ts' ? 'index' : '(none)';
  return parts[1];
}

/** Imports that break the rules, as `from -> to (layer -> layer)`. A file of a layer the rules do not name breaks them. */
export function layerViolations(graph: Map<string, string[]>, rules: LayerRules): string[] {
  const out: string[] = [];
  for (const [from, targets] of graph) {
    const allowed = rules[layerOf(from)];
    if (!allowed) {
      out.push(`${from} is in no layer (${Object.keys(rules).join(', ')})`);
      continue;
    }
    for (const to of targets) {
      if (!allowed.includes(layerOf(to))) out.push(`${from} -> ${to} (${layerOf(from)} may not import ${layerOf(to)})`);
    }
  }
  return out;
}

export interface ImportCycle {
  /** The shortest cycle through the knot's first file: `a -> b -> ... -> a`. */
  cycle: string;
  /** Every file of the knot (strongly connected component): each can reach each other. */
  files: string[];
}

/** Every knot of files that import each other in a circle, once (Tarjan's strongly connected components). */
export function importCycles(graph: Map<string, string[]>): ImportCycle[] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const connect = (v: string) => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) components.push(component);
  };
  for (const v of graph.keys()) if (!index.has(v)) connect(v);
  return components.map((c) => {
    const files = c.sort();
    return { cycle: cycleThrough(graph, new Set(files), files[0]).join(' -> '), files };
  });
}

/** One cycle through `start` within `component` (breadth-first: the shortest), ending where it started. */
function cycleThrough(graph: Map<string, string[]>, component: Set<string>, start: string): string[] {
  const from = new Map<string, string>();
  const queue = [start];
  while (queue.length) {
    const v = queue.shift()!;
    for (const w of graph.get(v) ?? []) {
      if (!component.has(w)) continue;
      if (w === start) {
        const cycle = [start];
        for (let at = v; at !== start; at = from.get(at)!) cycle.splice(1, 0, at);
        return [...cycle, start];
      }
      if (!from.has(w)) {
        from.set(w, v);
        queue.push(w);
      }
    }
  }
  return [start];
}

export interface FunctionLength {
  file: string;
  /** `name`, `Class.method`, `Class.constructor`, or `(anonymous)`; nested ones as `outer > inner`. */
  name: string;
  line: number;
  lines: number;
}

function nameOf(node: ts.Node): string {
  const named = (n: ts.Node) => (n as { name?: ts.Node }).name;
  const text = (n: ts.Node | undefined) =>
    n && (ts.isIdentifier(n) || ts.isStringLiteral(n) || ts.isPrivateIdentifier(n)) ? n.text : undefined;
  const parent = node.parent;
  const owner =
    parent && (ts.isClassDeclaration(parent) || ts.isClassExpression(parent))
      ? `${text(parent.name) ?? '(class)'}.`
      : '';
  if (ts.isConstructorDeclaration(node)) return `${owner}constructor`;
  const own = text(named(node));
  if (own) return owner + own;
  // An arrow function or function expression takes the name it is assigned to.
  if (
    parent
    && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent))
  ) {
    const grand = parent.parent;
    const cls =
      grand && (ts.isClassDeclaration(grand) || ts.isClassExpression(grand)) ? `${text(grand.name) ?? '(class)'}.` : '';
    return cls + (text(parent.name) ?? '(anonymous)');
  }
  return '(anonymous)';
}

/** Every function (declaration, method, accessor, constructor, arrow function, function expression) and its length. */
export function functionLengths(sources: Sources): FunctionLength[] {
  const out: FunctionLength[] = [];
  for (const [file, source] of Object.entries(sources)) {
    const sf = parse(file, source);
    const visit = (node: ts.Node, outer: string) => {
      let inner = outer;
      if (ts.isFunctionLike(node) && (node as { body?: ts.Node }).body) {
        const name = nameOf(node);
        inner = outer ? `${outer} > ${name}` : name;
        const first = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
        const last = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
        out.push({ file, name: inner, line: first + 1, lines: last - first + 1 });
      }
      ts.forEachChild(node, (child) => visit(child, inner));
    };
    visit(sf, '');
  }
  return out;
}

/** Functions longer than `max` lines. */
export function longFunctions(sources: Sources, max: number): FunctionLength[] {
  return functionLengths(sources).filter((f) => f.lines > max);
}

/** The cycle, and the other files of its knot if there are more. */
export function describeCycle(c: ImportCycle): string {
  const more = c.files.filter((f) => !c.cycle.split(' -> ').includes(f));
  return more.length ? `${c.cycle} (with ${more.join(', ')} in the same knot)` : c.cycle;
}

/** `file:line name (n lines)`: where to look. */
export function describeFunction(f: FunctionLength): string {
  return `${f.file}:${f.line} ${f.name} (${f.lines} lines)`;
}
