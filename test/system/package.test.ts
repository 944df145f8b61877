// The published shape: `npm run build` output is what `require('express-msm')` and `import ... from 'express-msm'` load;
// the tarball `npm pack` makes from a checkout without dist/ installs and runs in Express 4 and 5 apps and compiles
// in a TypeScript project without @types/express.
import { type ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { freePort, type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';
import { docFiles, tsSnippets } from '../helpers/docs';

const root = path.resolve(__dirname, '../..');

beforeAll(() => {
  // CI builds first; a bare `npm test` on a fresh checkout (or after editing lib/) builds here.
  const built = path.join(root, 'dist/index.js');
  const newest = (dir: string): number =>
    Math.max(
      0,
      ...fs
        .readdirSync(dir, { withFileTypes: true })
        .map((d) => (d.isDirectory() ? newest(path.join(dir, d.name)) : fs.statSync(path.join(dir, d.name)).mtimeMs)),
    );
  if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newest(path.join(root, 'lib'))) {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], {
      cwd: root,
      stdio: 'inherit',
    });
  }
}, 120_000);

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();
}

describe('package entry points', () => {
  it('points main, types and exports at dist/', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.main).toBe('dist/index.js');
    expect(pkg.types).toBe('dist/index.d.ts');
    expect(pkg.exports['.'].require).toBe('./dist/index.js');
    expect(pkg.peerDependencies['express-session']).toBeDefined();
    expect(Object.keys(pkg.dependencies).sort()).toEqual(expect.arrayContaining(['avsc', 'lru-cache', 'memjs']));
    expect(fs.existsSync(path.join(root, 'dist/index.d.ts'))).toBe(true);
  });

  it('loads with require and with import, by package name', () => {
    const names = 'MemcachedStore memcachedSession JsonTranscoder AvroTranscoder';
    const cjs = node([
      '-e',
      `const m = require('express-msm'); console.log('${names}'.split(' ').map((n) => typeof m[n]).join(','))`,
    ]);
    expect(cjs).toBe('function,function,function,function');
    const esm = node([
      '--input-type=module',
      '-e',
      `import { MemcachedStore, memcachedSession } from 'express-msm'; const s = new MemcachedStore({ memcachedNodes: 'n1:127.0.0.1:1' }); console.log(typeof s.genid(), typeof memcachedSession); await s.close();`,
    ]);
    expect(esm).toBe('string function');
  });

  it('gives ESM importers every CommonJS export by name (cjs-module-lexer sees them)', () => {
    const [named, cjs] = JSON.parse(
      node([
        '--input-type=module',
        '-e',
        `import * as m from 'express-msm'; import { createRequire } from 'module';
      const cjs = createRequire(import.meta.url)('express-msm');
      console.log(JSON.stringify([Object.keys(m).filter((k) => k !== 'default' && k !== '__esModule').sort(), Object.keys(cjs).filter((k) => k !== '__esModule').sort()]));`,
      ]),
    );
    expect(cjs.length).toBeGreaterThan(15);
    expect(named).toEqual(cjs);
  });
});

const REPO = 'https://github.com/express-msm/express-msm';

describe('package metadata', () => {
  it('names its repository, homepage and issue tracker, and packs a fresh build', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.repository).toEqual({ type: 'git', url: `git+${REPO}.git` });
    expect(pkg.homepage).toBe(`${REPO}#readme`);
    expect(pkg.bugs.url).toBe(`${REPO}/issues`);
    expect(pkg.scripts.prepack).toMatch(/npm run build/);
  });

  it('README links and images point into the repository by absolute URL (the npm page has no docs/ next to it)', () => {
    const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
    const targets = [...readme.matchAll(/\]\(([^)\s]+)\)/g)].map((m) => m[1]);
    expect(targets.length).toBeGreaterThan(5);
    for (const t of targets) {
      expect(t).toMatch(/^(https?:\/\/|#)/);
      // Links into this repository name a file that exists in it.
      const m =
        /^https:\/\/(?:github\.com\/express-msm\/express-msm\/blob|raw\.githubusercontent\.com\/express-msm\/express-msm)\/main\/([^?#]+)/.exec(
          t,
        );
      if (m) expect(fs.existsSync(path.join(root, m[1]))).toBe(true);
    }
    expect(
      targets.filter((t) => t.startsWith(REPO) || t.includes('raw.githubusercontent.com/express-msm')).length,
    ).toBeGreaterThan(5);
  });

  it('npm install leaves package-lock.json unchanged', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-lock-'));
    try {
      for (const f of ['package.json', 'package-lock.json']) fs.copyFileSync(path.join(root, f), path.join(dir, f));
      // The lockfile alone answers: no registry, no node_modules.
      execFileSync(
        'npm',
        ['install', '--package-lock-only', '--offline', '--ignore-scripts', '--no-audit', '--no-fund'],
        { cwd: dir, stdio: 'pipe' },
      );
      expect(fs.readFileSync(path.join(dir, 'package-lock.json'), 'utf8')).toBe(
        fs.readFileSync(path.join(root, 'package-lock.json'), 'utf8'),
      );
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('the packed tarball', () => {
  const modules = fs.realpathSync(path.join(root, 'node_modules'));
  let work: string;
  let tarball: string;
  let packed: string[];
  let pkg: { dependencies: Record<string, string> };
  let memcached: MemcachedProcess[];
  const apps: ChildProcess[] = [];

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-pack-'));
    // What a fresh clone has for the build (no dist/); dependencies come from this checkout's node_modules.
    const src = path.join(work, 'src');
    fs.mkdirSync(src);
    for (const f of ['package.json', 'README.md', 'LICENSE', 'tsconfig.json', 'tsconfig.build.json', 'lib']) {
      fs.cpSync(path.join(root, f), path.join(src, f), { recursive: true });
    }
    fs.symlinkSync(modules, path.join(src, 'node_modules'));
    const out = execFileSync('npm', ['pack', '--json', '--pack-destination', work], {
      cwd: src,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const [info] = JSON.parse(out);
    tarball = path.join(work, info.filename);
    packed = info.files.map((f: { path: string }) => f.path);
    pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    memcached = await startMemcacheds(1);
  }, 180_000);

  afterAll(async () => {
    for (const a of apps) a.kill();
    if (memcached) await killAll(memcached);
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  /** A project folder with the tarball unpacked as node_modules/express-msm, its dependencies and `extra` linked. */
  function project(name: string, extra: Record<string, string>): string {
    const dir = path.join(work, name);
    const nm = path.join(dir, 'node_modules');
    fs.mkdirSync(path.join(nm, 'express-msm'), { recursive: true });
    execFileSync('tar', ['-xzf', tarball, '-C', path.join(nm, 'express-msm'), '--strip-components=1']);
    // Exactly the declared dependencies: a require of an undeclared one fails here as it would after npm install.
    const links: Record<string, string> = {
      ...Object.fromEntries(Object.keys(pkg.dependencies).map((d) => [d, d])),
      ...extra,
    };
    for (const [as, from] of Object.entries(links)) {
      fs.mkdirSync(path.dirname(path.join(nm, as)), { recursive: true });
      fs.symlinkSync(path.join(modules, from), path.join(nm, as));
    }
    return dir;
  }

  /** Starts `file` in `dir` on a free port; resolves when it answers. */
  async function startApp(dir: string, file: string, source: string): Promise<number> {
    fs.writeFileSync(path.join(dir, file), source);
    const port = await freePort();
    const app = spawn(process.execPath, [file], {
      cwd: dir,
      env: { ...process.env, PORT: String(port), NODES: nodesString(memcached) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    apps.push(app);
    let output = '';
    app.stdout!.on('data', (d) => (output += d));
    app.stderr!.on('data', (d) => (output += d));
    await new Promise<void>((resolve, reject) => {
      app.once('exit', (code) => reject(new Error(`${file} exited with ${code}: ${output}`)));
      app.stdout!.on('data', () => {
        if (output.includes('listening')) resolve();
      });
    });
    return port;
  }

  /** Two requests sharing the cookie: the second sees the first one's write, which landed in memcached. */
  async function roundTrip(port: number): Promise<{ express: string }> {
    const first = await fetch(`http://127.0.0.1:${port}/`);
    const one = (await first.json()) as { n: number; id: string; express: string };
    const cookie = first.headers.get('set-cookie')!.split(';')[0];
    expect(one.n).toBe(1);
    expect(one.id).toMatch(/-n1$/);
    const second = await fetch(`http://127.0.0.1:${port}/`, { headers: { cookie } });
    const two = await second.json();
    expect(two).toEqual({ ...one, n: 2 });
    const stored = await new RawClient(memcached[0].port).get(one.id);
    expect(stored?.toString()).toContain('"n":2');
    return one;
  }

  it('holds dist/ (built by prepack), the README, the license and package.json, and no sources or tests', () => {
    expect(packed).toEqual(
      expect.arrayContaining([
        'package.json',
        'README.md',
        'LICENSE',
        'dist/index.js',
        'dist/index.d.ts',
        'dist/express/store.js',
        'dist/express/middleware.d.ts',
        'dist/transcoders/avro.js',
      ]),
    );
    expect(packed.filter((f) => !/^(dist\/.*\.(js|d\.ts|js\.map)|package\.json|README\.md|LICENSE)$/.test(f))).toEqual(
      [],
    );
  });

  it('runs in an Express 4 CommonJS app (require, memcachedSession)', async () => {
    const dir = project('express4-cjs', { express: 'express4', 'express-session': 'express-session' });
    const port = await startApp(
      dir,
      'app.js',
      `
const express = require('express');
const { memcachedSession } = require('express-msm');
const app = express();
app.use(memcachedSession({ memcachedNodes: process.env.NODES, session: { secret: 'pack', resave: false, saveUninitialized: false } }));
app.get('/', (req, res) => {
  req.session.n = (req.session.n || 0) + 1;
  res.json({ n: req.session.n, id: req.sessionID, express: require('express/package.json').version });
});
app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
`,
    );
    expect((await roundTrip(port)).express).toMatch(/^4\./);
  }, 60_000);

  it('runs in an Express 5 ESM app (import { MemcachedStore } from a .mjs file)', async () => {
    const dir = project('express5-esm', { express: 'express', 'express-session': 'express-session' });
    const port = await startApp(
      dir,
      'app.mjs',
      `
import express from 'express';
import session from 'express-session';
import { createRequire } from 'module';
import { MemcachedStore } from 'express-msm';
const version = createRequire(import.meta.url)('express/package.json').version;
const app = express();
const store = new MemcachedStore({ memcachedNodes: process.env.NODES });
app.use(session({ store, genid: store.genid, secret: 'pack', resave: false, saveUninitialized: false }));
app.get('/', (req, res) => {
  req.session.n = (req.session.n || 0) + 1;
  res.json({ n: req.session.n, id: req.sessionID, express: version });
});
app.listen(Number(process.env.PORT), '127.0.0.1', () => console.log('listening'));
`,
    );
    expect((await roundTrip(port)).express).toMatch(/^5\./);
  }, 60_000);

  it('type-checks in a strict TypeScript project (exactOptionalPropertyTypes, skipLibCheck off) with @types/express-session and @types/node but no @types/express', () => {
    // @types/express-session keeps its own @types/express (a link resolves from its real path, as in a pnpm or nested
    // layout); only express-msm's types and the consumer's code cannot see one.
    const dir = project('ts-consumer', {
      'express-session': 'express-session',
      '@types/express-session': '@types/express-session',
      '@types/node': '@types/node',
    });
    expect(fs.existsSync(path.join(dir, 'node_modules/@types/express'))).toBe(false);
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: false,
          noEmit: true,
          target: 'ES2022',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          types: ['node'],
        },
        files: ['consumer.ts'],
      }),
    );
    fs.writeFileSync(
      path.join(dir, 'consumer.ts'),
      `
import session from 'express-session';
import { MemcachedStore, type MemcachedStoreOptions, memcachedSession } from 'express-msm';
const options: MemcachedStoreOptions = { memcachedNodes: 'n1:127.0.0.1:11211', sessionBackupAsync: false };
const store = new MemcachedStore(options);
// Optional options accept undefined under exactOptionalPropertyTypes (a config object built from the environment).
const fromEnv = { memcachedNodes: process.env.NODES, autoDiscovery: undefined, route: undefined, logger: undefined };
export const other = new MemcachedStore(fromEnv);
export const mw = memcachedSession({ ...fromEnv, lockingMode: undefined, session: { secret: 's' } });
export const closing: Promise<void> = mw.store.close();
store.get('id', (err, data) => console.log(err, data?.cookie.maxAge));
export const handler = session({ store, secret: 's', resave: false, saveUninitialized: false });
`,
    );
    const tsc = path.join(modules, 'typescript/bin/tsc');
    let out = '';
    try {
      execFileSync(process.execPath, [tsc, '-p', dir], { cwd: dir, encoding: 'utf8', stdio: 'pipe' });
    } catch (e) {
      out = String((e as { stdout?: string }).stdout) + String((e as { stderr?: string }).stderr);
    }
    expect(out).toBe('');
  }, 120_000);
  it('compiles every TypeScript snippet of the README and docs/ against the package (strict, exactOptionalPropertyTypes)', () => {
    const dir = project('doc-snippets', {
      express: 'express',
      '@types/express': '@types/express',
      'express-session': 'express-session',
      '@types/express-session': '@types/express-session',
      '@types/node': '@types/node',
      fastify: 'fastify',
      '@fastify/cookie': '@fastify/cookie',
      '@fastify/session': '@fastify/session',
      'connect-redis': 'connect-redis',
      redis: 'redis',
      'prom-client': 'prom-client',
    });
    const files: Record<string, string> = {};
    for (const doc of docFiles()) {
      for (const s of tsSnippets(doc)) {
        // ESM, so snippets may await at top level; `export {}` keeps one that imports nothing a module.
        fs.writeFileSync(path.join(dir, `${s.name}.mts`), `${s.code}\nexport {};\n`);
        files[`${s.name}.mts`] = `${doc}:${s.line}`;
      }
    }
    expect(Object.keys(files).length).toBeGreaterThan(8);
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: true,
          noEmit: true,
          target: 'ES2022',
          module: 'nodenext',
          moduleResolution: 'nodenext',
          types: ['node'],
        },
        files: Object.keys(files),
      }),
    );
    let out = '';
    try {
      execFileSync(process.execPath, [path.join(modules, 'typescript/bin/tsc'), '-p', dir], {
        cwd: dir,
        stdio: 'pipe',
      });
    } catch (e) {
      out = String((e as { stdout?: Buffer }).stdout);
    }
    // Errors name the doc and the snippet's first line.
    expect(out.replace(/^(\w+\.mts)/gm, (f) => files[f] ?? f)).toBe('');
  }, 180_000);
});
