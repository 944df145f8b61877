// `npm run bench`: express-msm against MemoryStore, connect-memcached and connect-redis, in one run.
//
// Starts its own backends on free loopback ports (two memcached nodes for express-msm, one for
// connect-memcached, redis-server for connect-redis when installed), one server process per configuration
// (bench/server.ts) pinned to one core, creates many realistic sessions, then measures GET /read (session loaded,
// unchanged) and POST /write (one attribute changed) with a load generator in its own process pinned to the other
// core (wrk when installed, else autocannon), every request carrying the next session's cookie. The
// configurations run in alternation (A B C ... B C A ...) for several rounds; ratios are paired per round.
//
// Flags (environment in brackets):
//   --publish            5 rounds unless --rounds; writes bench/results.json and .svg (else a temporary folder)
//   --rounds N           [BENCH_ROUNDS, default 3]      --duration S     [BENCH_DURATION, s per run, default 4]
//   --connections N      [BENCH_CONNECTIONS, 16]        --sessions N     [BENCH_SESSIONS, 64]
//   --many-sessions N    [BENCH_MANY_SESSIONS, default 10000; 0: off]: every route is measured again over N sessions
//                         (each visited in turn, every N/(req/s) seconds: a few requests a minute, not sixty a second)
//   --warmup S           [BENCH_WARMUP, 1]              --only a,b       [BENCH_ONLY: configurations; also
//                                                        floor-sticky, floor-non-sticky: bench/floor.ts]
//   --routes read,write  [BENCH_ROUTES]                 --out DIR        [BENCH_OUT]
//   --profile a,b        [BENCH_PROFILE: servers run with node --cpu-prof; profiles go to bench/.work/profiles,
//                         summarise them with `node -r ./scripts/register.js bench/profile.ts <file>`]
//   --loader wrk|autocannon [BENCH_LOADER]              --no-pin [BENCH_PIN=0: no taskset]
//   BENCH_NODE_ARGS="--trace-gc ..."                    node/V8 flags for the servers only
//   --baseline DIR       [BENCH_BASELINE: another checkout (e.g. the code before a change); each msm-* configuration
//                         selected also runs on DIR's bench/server.ts and lib/ as "<config> @base", in the same
//                         rounds; the report adds new/base ratios of CPU per request and req/s, paired per round]
import { type ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { MemcachedProcess, canConnect, findBinary, freePort, memcachedBinary } from '../test/helpers/memcached';
import { renderSvg } from './chart';

const ROOT = path.join(__dirname, '..');
const ALL_CONFIGS = [
  'memory',
  'connect-memcached',
  'connect-redis',
  'msm-json',
  'msm-json-mw',
  'msm-avro',
  'msm-sticky',
  'msm-sticky-mw',
  'msm-locking',
];
/** Run only when named in --only: the least each mode's memcached traffic costs (bench/floor.ts). */
const FLOOR_CONFIGS = ['floor-sticky', 'floor-non-sticky'];
/** Configurations served by the two msm memcached nodes. */
const onMsmNodes = (config: string) => /^(msm|floor)-/.test(config);
export const LABELS: Record<string, string> = {
  memory: 'MemoryStore',
  'connect-memcached': 'connect-memcached',
  'connect-redis': 'connect-redis',
  'msm-json': 'msm non-sticky JSON',
  'msm-json-mw': 'msm non-sticky memcachedSession()',
  'msm-avro': 'msm non-sticky Avro',
  'msm-sticky': 'msm sticky JSON',
  'msm-sticky-mw': 'msm sticky memcachedSession()',
  'msm-locking': 'msm non-sticky lock=all',
  'floor-sticky': 'floor: MemoryStore + backup set',
  'floor-non-sticky': 'floor: non-sticky operations',
};
/** memcachedSession() variants and the bare Store they are compared with (lockingMode none: the middleware's cost). */
const BARE_OF: Record<string, string> = { 'msm-json-mw': 'msm-json', 'msm-sticky-mw': 'msm-sticky' };
const ALL_ROUTES = ['read', 'write'] as const;
/** What one measurement runs: a route over the `--sessions` set (`read`), or over the many-sessions set (`read@many`). */
type Route = string;
/** Suffix of a route measured over the many-sessions set. */
const MANY = '@many';
/** The URL path (and method) of a measured route. */
const pathOf = (route: Route) => (route.endsWith(MANY) ? route.slice(0, -MANY.length) : route);

/** `--name value` or `--name=value` from argv, else the environment variable, else undefined. */
function arg(name: string, envName?: string): string | undefined {
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) return argv[i + 1] ?? '';
    if (argv[i].startsWith(`--${name}=`)) return argv[i].slice(name.length + 3);
  }
  return envName ? process.env[envName] : undefined;
}

function flag(name: string): boolean {
  return process.argv.slice(2).includes(`--${name}`);
}

function num(name: string, envName: string, dflt: number): number {
  const v = arg(name, envName);
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name} (${envName}) = ${v}: expected a number`);
  return n;
}

function list(name: string, envName: string): string[] {
  return (arg(name, envName) ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

const publish = flag('publish');
const settings = {
  duration: num('duration', 'BENCH_DURATION', 4),
  rounds: Math.max(1, Math.round(num('rounds', 'BENCH_ROUNDS', publish ? 5 : 3))),
  connections: Math.max(1, Math.round(num('connections', 'BENCH_CONNECTIONS', 16))),
  sessions: Math.max(1, Math.round(num('sessions', 'BENCH_SESSIONS', 64))),
  manySessions: Math.round(num('many-sessions', 'BENCH_MANY_SESSIONS', 10_000)),
  warmup: num('warmup', 'BENCH_WARMUP', 1),
};
const routeList = list('routes', 'BENCH_ROUTES');
/** --routes read profiles one route alone. */
const BASE_ROUTES: readonly Route[] = ALL_ROUTES.filter((r) => !routeList.length || routeList.includes(r));
/** Every measurement per configuration and round: the routes over the small set, then over the many-sessions set. */
const ROUTES: readonly Route[] = [
  ...BASE_ROUTES,
  ...(settings.manySessions > 0 ? BASE_ROUTES.map((r) => r + MANY) : []),
];
const only = list('only', 'BENCH_ONLY');
const profiled = new Set(list('profile', 'BENCH_PROFILE'));
const outArg = arg('out', 'BENCH_OUT');
const baselineArg = arg('baseline', 'BENCH_BASELINE');
/** Runs without --publish never overwrite the committed results. */
const outDir = publish
  ? path.join(ROOT, 'bench')
  : outArg
    ? path.resolve(outArg)
    : fs.mkdtempSync(path.join(os.tmpdir(), 'msm-bench-'));
const profileDir = path.join(ROOT, 'bench', '.work', 'profiles');

// --- placement -------------------------------------------------------------------------------------------------

/**
 * Servers on one core, the load generator and the backends on the other (when taskset exists and there are 2+
 * cores): the load generator's CPU then never dilutes the difference between stores.
 */
function placement(): { pinned: boolean; serverCpu?: number; loadCpu?: number; reason?: string } {
  if (flag('no-pin') || process.env.BENCH_PIN === '0') return { pinned: false, reason: 'disabled (--no-pin)' };
  if (os.cpus().length < 2) return { pinned: false, reason: 'fewer than 2 cores' };
  if (!findBinary(['/usr/bin/taskset', '/bin/taskset', '/usr/local/bin/taskset'], '--version'))
    return { pinned: false, reason: 'taskset not installed' };
  return { pinned: true, serverCpu: 0, loadCpu: 1 };
}
const place = placement();

/** Runs `cmd args` on `cpu` (taskset) when pinning. */
function pinned(cpu: number | undefined, cmd: string, args: string[]): [string, string[]] {
  return place.pinned && cpu !== undefined ? ['taskset', ['-c', String(cpu), cmd, ...args]] : [cmd, args];
}

/** wrk answers --version with exit code 1: look for the file. */
function wrkBinary(): string | undefined {
  return [process.env.WRK_BIN, '/usr/bin/wrk', '/usr/local/bin/wrk'].find((p): p is string => {
    if (!p) return false;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return true;
    } catch {
      return false;
    }
  });
}

/** Moves a running process (every thread) to `cpu`. */
function pinProcess(pid: number | undefined, cpu: number | undefined): void {
  if (!place.pinned || pid === undefined || cpu === undefined) return;
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

const loaderWanted = arg('loader', 'BENCH_LOADER');
const wrk = loaderWanted === 'autocannon' ? undefined : wrkBinary();
if (loaderWanted === 'wrk' && !wrk) throw new Error('--loader wrk: wrk is not installed');
const loader = wrk ? 'wrk' : 'autocannon';

// --- backends --------------------------------------------------------------------------------------------------

function redisBinary(): string | undefined {
  return findBinary(
    [process.env.REDIS_SERVER_BIN, '/usr/bin/redis-server', '/usr/local/bin/redis-server'],
    '--version',
  );
}

async function startRedis(bin: string): Promise<{ proc: ChildProcess; port: number }> {
  const port = await freePort();
  const proc = spawn(
    bin,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
    { stdio: 'ignore' },
  );
  const until = Date.now() + 5000;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`redis-server exited with ${proc.exitCode}`);
    if (await canConnect(port)) return { proc, port };
    await sleep(20);
  }
  throw new Error('redis-server did not start');
}

/** memcached `stats` as numbers. */
function memcachedStats(port: number): Promise<Record<string, number>> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const t = setTimeout(() => {
      s.destroy();
      reject(new Error(`stats on ${port} timed out`));
    }, 2000);
    s.on('connect', () => s.write('stats\r\n'));
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (!buf.endsWith('END\r\n')) return;
      clearTimeout(t);
      s.end();
      const out: Record<string, number> = {};
      for (const line of buf.split('\r\n')) {
        const m = /^STAT (\S+) (\S+)$/.exec(line);
        if (m && /^-?\d+(\.\d+)?$/.test(m[2])) out[m[1]] = Number(m[2]);
      }
      resolve(out);
    });
    s.on('error', (e) => {
      clearTimeout(t);
      reject(e);
    });
  });
}

/** Memcached commands seen by the nodes: add, set, replace, cas... all count in cmd_set. */
type MemcachedOps = { get: number; set: number; touch: number; delete: number; total: number };

async function memcachedOps(ports: number[]): Promise<MemcachedOps> {
  const out: MemcachedOps = { get: 0, set: 0, touch: 0, delete: 0, total: 0 };
  for (const p of ports) {
    const s = await memcachedStats(p);
    out.get += s.cmd_get ?? 0;
    out.set += s.cmd_set ?? 0;
    out.touch += s.cmd_touch ?? 0;
    out.delete += (s.delete_hits ?? 0) + (s.delete_misses ?? 0);
  }
  out.total = out.get + out.set + out.touch + out.delete;
  return out;
}

function diffOps<T extends { [k: string]: number }>(a: T, b: T): T {
  const out: { [k: string]: number } = {};
  for (const k of Object.keys(b)) out[k] = (b[k] ?? 0) - (a[k] ?? 0);
  return out as T;
}

// --- servers run JavaScript ---------------------------------------------------------------------------------

/**
 * The servers run JavaScript, as an installed package does: lib/ (or a `<config>@<dir>` copy) and the server's own
 * files are transpiled here, once per run, into bench/.work/js. Transpiled inside the server (scripts/register.js),
 * the TypeScript compiler (18 MB) and every module's inline source map (lib/: 11.9 MB of heap against 2.5 MB for
 * its build) would stay in the server's heap, and every full GC would mark them on the server's core.
 */
const JS_ROOT = path.join(ROOT, 'bench', '.work', 'js');

/**
 * The commit the run measured, and which files of lib/, bench/ and the lockfile differed from it when it started (a
 * run of uncommitted code says so). `unknown` outside a git checkout.
 */
function sourceState(dir = ROOT): { commit: string; uncommitted: string[] } {
  const git = (...args: string[]) =>
    execFileSync('git', args, { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  try {
    const commit = git('rev-parse', '--short', 'HEAD').trim();
    const uncommitted = git('status', '--porcelain', '--', 'lib', 'bench', 'package-lock.json')
      .split('\n')
      .filter(Boolean)
      .map((l) => l.slice(3));
    return { commit, uncommitted };
  } catch {
    return { commit: 'unknown', uncommitted: [] };
  }
}
/** V8 flags of every server (startServer says why). */
const SERVER_V8_FLAGS = ['--no-flush-bytecode', '--no-memory-reducer'];
let serverJs = '';
/** lib/ and each `@dir` copy -> its JavaScript. */
const libJs = new Map<string, string>();

function transpileFile(from: string, to: string): void {
  // The same transpiling as scripts/register.js, without its inline source maps (they would sit in the heap).
  const { transpile } = require('../scripts/register.js');
  fs.mkdirSync(path.dirname(to), { recursive: true });
  fs.writeFileSync(to, transpile(fs.readFileSync(from, 'utf8'), from, false));
}

/** [source, target] of every .ts file under `src`, the target under `out` with .js. */
function tsFiles(src: string, out: string): [string, string][] {
  const files: [string, string][] = [];
  for (const entry of fs.readdirSync(src, { withFileTypes: true })) {
    const from = path.join(src, entry.name);
    if (entry.isDirectory()) files.push(...tsFiles(from, path.join(out, entry.name)));
    else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts'))
      files.push([from, path.join(out, entry.name.slice(0, -3) + '.js')]);
  }
  return files;
}

function transpileTree(src: string, out: string): void {
  for (const [from, to] of tsFiles(src, out)) transpileFile(from, to);
}

/** The JavaScript of a TypeScript folder inside the repository (lib/ or a copy of it), under bench/.work/js. */
function compiledLib(dir: string): string {
  const src = path.resolve(ROOT, dir);
  const rel = path.relative(ROOT, src);
  if (rel.startsWith('..') || path.isAbsolute(rel))
    throw new Error(
      `${dir}: a copy of lib/ must sit inside the repository (its require()s resolve node_modules from there)`,
    );
  const out = path.join(JS_ROOT, rel);
  fs.rmSync(out, { recursive: true, force: true });
  transpileTree(src, out);
  return out;
}

/** bench/server.ts and bench/floor.ts as JavaScript (the server requires ./floor). */
function compiledServer(): string {
  for (const f of ['server', 'floor'])
    transpileFile(path.join(__dirname, `${f}.ts`), path.join(JS_ROOT, 'bench', `${f}.js`));
  return path.join(JS_ROOT, 'bench', 'server.js');
}

// --- the baseline (--baseline DIR) ---------------------------------------------------------------------------

/** A configuration run on the baseline's code is named `<config> @base` (a space: `@dir` names a copy of lib/). */
const BASE_SUFFIX = ' @base';
const baseOf = (config: string) => config + BASE_SUFFIX;
const isBase = (name: string) => name.endsWith(BASE_SUFFIX);
/** A configuration more than this much CPU per request above its baseline is flagged. */
const SLOWER_THRESHOLD = 0.03;

interface Baseline {
  dir: string;
  source: { commit: string; uncommitted: string[] };
  serverJs: string;
  lib: string;
  transpiledWith: string;
}

/** Child program: transpiles [from, to] pairs with the given scripts/register.js, as run.ts's transpileFile does. */
const TRANSPILE_CHILD = `
const fs = require('fs'), path = require('path');
const { transpile } = require(process.argv[1]);
if (typeof transpile !== 'function') process.exit(3);
for (const [from, to] of JSON.parse(fs.readFileSync(process.argv[2], 'utf8'))) {
  fs.mkdirSync(path.dirname(to), { recursive: true });
  // An older transpile may ignore its sourceMap argument: no inline map in the server's heap either way.
  fs.writeFileSync(to, transpile(fs.readFileSync(from, 'utf8'), from, false).replace(/\\n\\/\\/# sourceMappingURL=data:[^\\n]*\\s*$/, '\\n'));
}`;

/**
 * The baseline's bench/server.ts, bench/floor.ts and lib/ as JavaScript, as this checkout's are: transpiled by its own
 * scripts/register.js (in a child process: its TypeScript stays out of this one) into bench/.work/js/baseline, beside
 * a link to its node_modules, so its server runs its code on its dependencies and nothing is written into DIR.
 */
function compiledBaseline(dirArg: string): Baseline {
  const dir = path.resolve(dirArg);
  for (const need of ['bench/server.ts', 'lib/index.ts', 'scripts/register.js', 'node_modules']) {
    if (!fs.existsSync(path.join(dir, need)))
      throw new Error(`--baseline ${dir}: no ${need} there${need === 'node_modules' ? ' (run npm ci in it)' : ''}`);
  }
  if (dir === ROOT) throw new Error('--baseline names this checkout itself');
  const out = path.join(JS_ROOT, 'baseline');
  fs.rmSync(out, { recursive: true, force: true });
  fs.mkdirSync(out, { recursive: true });
  // The server.js at out/bench/ finds lib at out/lib/ by BENCH_LIB or, in a server from before it, by ../lib.
  const files = [...tsFiles(path.join(dir, 'lib'), path.join(out, 'lib'))];
  for (const f of ['server', 'floor']) {
    const from = path.join(dir, 'bench', `${f}.ts`);
    if (fs.existsSync(from)) files.push([from, path.join(out, 'bench', `${f}.js`)]);
  }
  const list = path.join(out, 'files.json');
  fs.writeFileSync(list, JSON.stringify(files));
  let transpiledWith = `${path.join(dir, 'scripts', 'register.js')} (its TypeScript)`;
  try {
    execFileSync(process.execPath, ['-e', TRANSPILE_CHILD, path.join(dir, 'scripts', 'register.js'), list], {
      cwd: dir,
      stdio: ['ignore', 'ignore', 'pipe'],
    });
  } catch (e: any) {
    if (e.status !== 3) throw new Error(`--baseline ${dir}: transpiling its code failed: ${e.stderr ?? e.message}`);
    // Its register.js exports no transpile(): this checkout's does the same job.
    for (const [from, to] of files) transpileFile(from, to);
    transpiledWith = `${path.join(ROOT, 'scripts', 'register.js')} (${dir}'s exports no transpile())`;
  }
  fs.rmSync(list);
  // Resolution goes from the file upwards: out/node_modules comes before this checkout's.
  fs.symlinkSync(path.join(dir, 'node_modules'), path.join(out, 'node_modules'), 'dir');
  return {
    dir,
    source: sourceState(dir),
    serverJs: path.join(out, 'bench', 'server.js'),
    lib: path.join(out, 'lib'),
    transpiledWith,
  };
}

// --- servers ---------------------------------------------------------------------------------------------------

/** What one server process runs: `config` (server.ts's factory) on `lib`, by `script`, started in `cwd`. */
interface ServerSpec {
  name: string;
  config: string;
  script: string;
  lib: string;
  cwd: string;
}

/** This checkout's server for `name` (`<config>` or `<config>@<copy of lib/>`), or the baseline's for `<config> @base`. */
function serverSpec(name: string, baseline: Baseline | undefined): ServerSpec {
  if (isBase(name)) {
    if (!baseline) throw new Error(`${name} without --baseline`);
    return {
      name,
      config: name.slice(0, -BASE_SUFFIX.length),
      script: baseline.serverJs,
      lib: baseline.lib,
      cwd: baseline.dir,
    };
  }
  const at = name.indexOf('@');
  return {
    name,
    config: at < 0 ? name : name.slice(0, at),
    script: serverJs,
    lib: libJs.get(at < 0 ? 'lib' : name.slice(at + 1))!,
    cwd: ROOT,
  };
}

interface Server {
  name: string;
  proc: ChildProcess;
  port: number;
  cookies: string[];
  /** The many-sessions set (--many-sessions), empty when off. */
  manyCookies: string[];
  /** Where the load generator starts in each set: where the last run stopped, so every session is visited in turn. */
  cursor: Record<'few' | 'many', number>;
  /** memcached ports whose stats describe this configuration. */
  statPorts: number[];
  /** Backend (memcached, redis-server) process ids, for their CPU time. */
  backendPids: number[];
  msm: boolean;
}

function startServer(
  spec: ServerSpec,
  env: NodeJS.ProcessEnv,
): Promise<{ server?: { proc: ChildProcess; port: number }; skip?: string; error?: string }> {
  const { name } = spec;
  // BENCH_NODE_ARGS: V8/node flags for the servers only (e.g. --trace-gc, which NODE_OPTIONS does not allow).
  // --no-flush-bytecode: a server idles for a minute while the others run, and V8 then flushes the bytecode (and
  // with it the optimized code and type feedback) of functions it has not run for a few GCs; every run would start
  // cold, the larger code paths the coldest. A server under load never idles that long.
  // --no-memory-reducer: the same idle minute lets V8 shrink the server's heap, and the next run pays for regrowing it
  // in GC work (the sticky write most: 0.80x against 0.86x MemoryStore in one run; docs/benchmark.md).
  const nodeArgs = [...SERVER_V8_FLAGS, ...(process.env.BENCH_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [])];
  if (profiled.has(name)) {
    fs.mkdirSync(profileDir, { recursive: true });
    nodeArgs.push(
      '--cpu-prof',
      `--cpu-prof-dir=${profileDir}`,
      `--cpu-prof-name=${name.replace(/[^\w.-]+/g, '_')}-${Date.now()}.cpuprofile`,
    );
  }
  const [cmd, args] = pinned(place.serverCpu, process.execPath, [...nodeArgs, spec.script, spec.config]);
  // spawn, not fork: taskset execs node, which still finds the IPC channel it inherits.
  const proc = spawn(cmd, args, {
    cwd: spec.cwd,
    env: { ...process.env, ...env, BENCH_CONFIG: spec.config, BENCH_LIB: spec.lib },
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      proc.kill('SIGKILL');
      resolve({ error: 'did not start within 20 s' });
    }, 20_000);
    proc.on('message', (m: any) => {
      if (m?.type === 'ready') {
        clearTimeout(t);
        resolve({ server: { proc, port: m.port } });
      } else if (m?.type === 'skip') {
        clearTimeout(t);
        resolve({ skip: m.reason });
      } else if (m?.type === 'error') {
        clearTimeout(t);
        resolve({ error: m.message });
      }
    });
    proc.on('exit', (code) => {
      clearTimeout(t);
      resolve({ error: `exited with ${code} before it was ready` });
    });
  });
}

async function stopServer(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode) return;
  const exited = new Promise((r) => proc.once('exit', r));
  try {
    proc.send({ type: 'close' });
  } catch {
    proc.kill('SIGTERM');
  }
  const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

function request(
  port: number,
  method: string,
  urlPath: string,
  cookie?: string,
): Promise<{ status: number; body: string; setCookie?: string[] }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, agent: false, headers: cookie ? { cookie } : {} },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body, setCookie: res.headers['set-cookie'] }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The sessions the load rotates over, created through the app itself. */
async function createSessions(port: number, n: number): Promise<string[]> {
  const cookies: string[] = new Array(n);
  let next = 0;
  // 16 logins at a time: 10,000 sessions in seconds, not minutes.
  const worker = async () => {
    while (next < n) {
      const i = next++;
      const r = await request(port, 'GET', '/login');
      const c = r.setCookie?.[0]?.split(';')[0];
      if (r.status !== 200 || !c) throw new Error(`/login answered ${r.status} without a session cookie: ${r.body}`);
      cookies[i] = c;
    }
  };
  await Promise.all(Array.from({ length: Math.min(16, n) }, worker));
  const check = await request(port, 'GET', '/read', cookies[0]);
  if (check.status !== 200) throw new Error(`/read with a fresh session answered ${check.status}: ${check.body}`);
  const w = await request(port, 'POST', '/write', cookies[0]);
  if (w.status !== 200) throw new Error(`/write with a fresh session answered ${w.status}: ${w.body}`);
  return cookies;
}

/** CPU time (µs) of backend processes from /proc (Linux; 10 ms ticks): the backends' share of the cost. */
function procCpuUs(pids: number[]): number {
  let us = 0;
  for (const pid of pids) {
    try {
      us += statCpuUs(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
    } catch {
      return NaN;
    }
  }
  return us;
}

/** The fields of a /proc stat line after its `(comm)`. */
function statFields(stat: string): string[] {
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** utime + stime of a /proc stat line, in µs (10 ms ticks). */
function statCpuUs(stat: string): number {
  const f = statFields(stat);
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

/**
 * The server's kernel-side counters (Linux /proc): read and write syscalls (`syscr`, `syscw`: every socket read,
 * write and writev), context switches (voluntary: the process slept in epoll), minor page faults. Per request they
 * show how many event-loop turns and syscalls a configuration costs, which the CPU time alone does not.
 */
function procCounters(pid: number | undefined): Record<string, number> | undefined {
  try {
    const io = fs.readFileSync(`/proc/${pid}/io`, 'utf8');
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const field = (text: string, name: string) => Number(new RegExp(`^${name}:\\s*(\\d+)`, 'm').exec(text)?.[1] ?? NaN);
    return {
      readSyscalls: field(io, 'syscr'),
      writeSyscalls: field(io, 'syscw'),
      voluntarySwitches: field(status, 'voluntary_ctxt_switches'),
      involuntarySwitches: field(status, 'nonvoluntary_ctxt_switches'),
      minorFaults: Number(statFields(stat)[7]),
      ...threadCpuUs(pid!),
    };
  } catch {
    return undefined;
  }
}

/** CPU µs of the server's main (JavaScript) thread and of its other threads (V8's GC and compiler helpers, libuv's pool; Node 20 names them all "node"). */
function threadCpuUs(pid: number): Record<string, number> {
  const out: Record<string, number> = { mainThreadUs: 0, otherThreadsUs: 0 };
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    out[Number(tid) === pid ? 'mainThreadUs' : 'otherThreadsUs'] += statCpuUs(
      fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'),
    );
  }
  return out;
}

async function serverCpu(port: number): Promise<number> {
  return JSON.parse((await request(port, 'GET', '/__cpu')).body).us;
}

async function serverRuntime(port: number): Promise<Record<string, unknown>> {
  const r = await request(port, 'GET', '/__runtime');
  // A baseline's server from before /__runtime answers 404.
  return r.status === 200 ? JSON.parse(r.body) : { unknown: `GET /__runtime answered ${r.status}` };
}

async function clientOps(port: number): Promise<Record<string, number>> {
  const r = await request(port, 'GET', '/__ops');
  return r.status === 200 ? JSON.parse(r.body) : {};
}

// --- load ------------------------------------------------------------------------------------------------------

interface Measured {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
}

/** One measurement: the load generator in its own process on its own core, the next session's cookie per request. */
async function load(s: Server, route: Route, duration: number): Promise<Measured> {
  const url = `http://127.0.0.1:${s.port}/${pathOf(route)}`;
  const method = pathOf(route) === 'write' ? 'POST' : 'GET';
  const set = route.endsWith(MANY) ? 'many' : 'few';
  const cookies = set === 'many' ? s.manyCookies : s.cookies;
  // Each run starts where the last one on this set stopped: over 10,000 sessions a run of a few seconds visits only
  // part of them, and every session should come round in turn (never the same few warmed ones).
  const offset = s.cursor[set] % cookies.length;
  let cmd: string;
  let args: string[];
  const env = { ...process.env };
  if (wrk) {
    const cookieFile = path.join(os.tmpdir(), `msm-bench-cookies-${process.pid}-${s.name.replace(/[^\w.-]/g, '_')}`);
    fs.writeFileSync(cookieFile, cookies.join('\n') + '\n');
    env.BENCH_COOKIES = cookieFile;
    env.BENCH_OFFSET = String(offset);
    env.BENCH_METHOD = method;
    // wrk takes whole seconds.
    [cmd, args] = pinned(place.loadCpu, wrk, [
      '-t1',
      `-c${settings.connections}`,
      `-d${Math.max(1, Math.round(duration))}s`,
      '--latency',
      '-s',
      path.join(__dirname, 'wrk.lua'),
      url,
    ]);
  } else {
    const payload = JSON.stringify({ url, method, connections: settings.connections, duration, cookies, offset });
    [cmd, args] = pinned(place.loadCpu, process.execPath, [
      '-r',
      path.join(ROOT, 'scripts', 'register.js'),
      path.join(__dirname, 'autocannon-load.ts'),
      payload,
    ]);
  }
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(cmd, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'inherit'] });
    let so = '';
    p.stdout!.on('data', (d) => (so += d));
    p.on('error', reject);
    p.on('exit', (code) => (code === 0 ? resolve(so) : reject(new Error(`${loader} exited with ${code}: ${so}`))));
  }).finally(() => env.BENCH_COOKIES && fs.rmSync(env.BENCH_COOKIES, { force: true }));
  const line = /(?:WRK|AUTOCANNON)_RESULT (\{.*\})/.exec(out);
  if (!line) throw new Error(`${loader} printed no result: ${out}`);
  const r = JSON.parse(line[1]);
  s.cursor[set] += r.requests;
  const seconds = r.durationUs / 1e6;
  return {
    rps: r.requests / seconds,
    p50: r.p50Us / 1000,
    p99: r.p99Us / 1000,
    requests: r.requests,
    non2xx: wrk ? r.status : r.non2xx,
    errors: wrk ? r.connect + r.read + r.write : r.errors,
    timeouts: wrk ? r.timeout : r.timeouts,
  };
}

// --- reporting -------------------------------------------------------------------------------------------------

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Bytes of the bench session with each transcoder (the target: Avro at most 50% of JSON). */
function payloadBytes(): Record<string, number> {
  const out: Record<string, number> = {};
  try {
    const lib = require(path.join(ROOT, 'lib'));
    const { benchSession, BENCH_AVRO_SCHEMA } = require('./server');
    const stored = { cookie: { originalMaxAge: 1800000, httpOnly: true, path: '/' }, ...benchSession(1) };
    out.json = new lib.JsonTranscoder().encode(stored).length;
    const Avro = lib.AvroTranscoder ?? require(path.join(ROOT, 'lib', 'transcoders', 'avro')).AvroTranscoder;
    if (typeof Avro === 'function') out.avro = new Avro({ schema: BENCH_AVRO_SCHEMA }).encode(stored).length;
  } catch (e) {
    out.error = 0;
    console.log(`note: payload sizes not measured: ${(e as Error).message}`);
  }
  return out;
}

/** The targets (CPU per request, req/s, Avro's payload size), as far as this run measured them. */
function targets(
  summary: Record<string, any>,
  payload: Record<string, number>,
): { target: string; measured: string; met: boolean }[] {
  const out: { target: string; measured: string; met: boolean }[] = [];
  const names: Record<string, string> = { vsRedis: 'connect-redis', vsMemory: 'MemoryStore', vsBare: 'the bare Store' };
  const ratio = (c: string, route: Route, against: 'vsRedis' | 'vsMemory' | 'vsBare', min: number) => {
    const x = summary[c]?.[route]?.[against];
    if (typeof x === 'number' && Number.isFinite(x)) {
      out.push({
        target: `${LABELS[c]} ${route} >= ${min}x ${names[against]}`,
        measured: `${x.toFixed(2)}x`,
        met: x >= min,
      });
    }
  };
  // CPU per request first (steadier than req/s on a shared machine): at most `max` times the store it is judged by.
  const cpu = (c: string, route: Route, max: number) => {
    const x = summary[c]?.[route]?.cpuVsAgainst;
    if (typeof x === 'number' && Number.isFinite(x)) {
      out.push({
        target: `${LABELS[c]} ${route} CPU/req <= ${max}x ${LABELS[CPU_AGAINST[c]]}`,
        measured: `${x.toFixed(2)}x`,
        met: x <= max,
      });
    }
  };
  for (const route of ALL_ROUTES) {
    cpu('msm-json', route, 1.0);
    cpu('msm-json-mw', route, 1.0);
    cpu('msm-sticky', route, route === 'read' ? 1.05 : 1.15);
    cpu('msm-sticky-mw', route, route === 'read' ? 1.05 : 1.15);
  }
  for (const route of ALL_ROUTES) {
    ratio('msm-json', route, 'vsRedis', 1.0);
    ratio('msm-json-mw', route, 'vsRedis', 1.0);
    ratio('msm-sticky', route, 'vsMemory', route === 'read' ? 0.95 : 0.9);
    ratio('msm-sticky-mw', route, 'vsMemory', route === 'read' ? 0.95 : 0.9);
    ratio('msm-json-mw', route, 'vsBare', 0.95);
    ratio('msm-sticky-mw', route, 'vsBare', 0.95);
  }
  if (payload.json && payload.avro) {
    const r = payload.avro / payload.json;
    out.push({
      target: 'Avro payload <= 50% of JSON (bench session)',
      measured: `${payload.avro} / ${payload.json} bytes = ${(100 * r).toFixed(0)}%`,
      met: r <= 0.5,
    });
  }
  return out;
}

function pad(s: string, n: number, right = false): string {
  return right ? s.padStart(n) : s.padEnd(n);
}

function fmtRatio(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '-' : `${x.toFixed(2)}x`;
}

/** Three decimals: the baseline's threshold is a few percent. */
function fmtRatio3(x: number | undefined): string {
  return x === undefined || !Number.isFinite(x) ? '-' : `${x.toFixed(3)}x`;
}

/** The configuration's label; a baseline twin's is its configuration's with ` @base`. */
function label(config: string): string {
  const c = isBase(config) ? config.slice(0, -BASE_SUFFIX.length) : config;
  return (LABELS[c] ?? c) + (c === config ? '' : BASE_SUFFIX);
}

/**
 * What each configuration's CPU per request is judged against: non-sticky (memcached round trips per request) against
 * connect-redis, sticky (local primary) against MemoryStore.
 */
export const CPU_AGAINST: Record<string, string> = {
  'connect-memcached': 'connect-redis',
  'msm-json': 'connect-redis',
  'msm-json-mw': 'connect-redis',
  'msm-avro': 'connect-redis',
  'msm-locking': 'connect-redis',
  'msm-sticky': 'memory',
  'msm-sticky-mw': 'memory',
};

/**
 * The first table: the server's CPU per request (all threads, median over rounds), read and write, each with its
 * ratio against CPU_AGAINST (paired per round), and the req/s ratios beside it. `suffix`: '' for the --sessions
 * set, MANY for the many-sessions set.
 */
export function cpuTable(summary: any, configs: string[], suffix = ''): string {
  const lines = [
    '| configuration | read CPU µs/req | write CPU µs/req | against | read req/s | write req/s | req/s ratio read | req/s ratio write |',
    '|---|--:|--:|---|--:|--:|--:|--:|',
  ];
  for (const c of configs) {
    const r = summary[c]?.[`read${suffix}`];
    const w = summary[c]?.[`write${suffix}`];
    if (!r && !w) continue;
    const against = CPU_AGAINST[isBase(c) ? c.slice(0, -BASE_SUFFIX.length) : c];
    const cpu = (x: any) =>
      !x ? '-' : `${x.cpuUsPerRequest.toFixed(0)}${against && x.cpuVsAgainst ? ` (${fmtRatio(x.cpuVsAgainst)})` : ''}`;
    const rpsRatio = (x: any) => (!x || !against ? '-' : fmtRatio(against === 'memory' ? x.vsMemory : x.vsRedis));
    const rps = (x: any) => (!x ? '-' : Math.round(x.rps).toLocaleString('en-US'));
    lines.push(
      `| ${label(c)} | ${cpu(r)} | ${cpu(w)} | ${against ? label(against) : ''} | ${rps(r)} | ${rps(w)} | ${rpsRatio(r)} | ${rpsRatio(w)} |`,
    );
  }
  return lines.join('\n');
}

export function markdownTable(summary: any, configs: string[], suffix = ''): string {
  const lines = [
    '| configuration | read req/s | p50 ms | p99 ms | vs Memory | vs redis | vs bare | CPU µs/req app+backend | write req/s | p50 ms | p99 ms | vs Memory | vs redis | vs bare | CPU µs/req app+backend |',
    '|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|',
  ];
  for (const c of configs) {
    const r = summary[c]?.[`read${suffix}`];
    const w = summary[c]?.[`write${suffix}`];
    if (!r && !w) continue;
    const cells = (x: any) =>
      !x
        ? ['-', '-', '-', '-', '-', '-', '-']
        : [
            Math.round(x.rps).toLocaleString('en-US'),
            x.p50.toFixed(1),
            x.p99.toFixed(1),
            fmtRatio(x.vsMemory),
            fmtRatio(x.vsRedis),
            fmtRatio(x.vsBare),
            `${x.cpuUsPerRequest.toFixed(0)}+${x.backendCpuUsPerRequest.toFixed(0)}`,
          ];
    lines.push(`| ${label(c)} | ${[...cells(r), ...cells(w)].join(' | ')} |`);
  }
  return lines.join('\n');
}

/** A markdown table with a row per configuration and route; `cells` gives a row's cells, or undefined to skip it. */
function perRouteTable(
  summary: any,
  configs: string[],
  header: string[],
  cells: (x: any, config: string, route: Route) => string[] | undefined,
): string {
  const lines = [`| configuration | route | ${header.join(' | ')} |`, `|---|---|${header.map(() => '--:|').join('')}`];
  for (const c of configs) {
    for (const route of ROUTES) {
      const row = summary[c]?.[route] && cells(summary[c][route], c, route);
      if (row) lines.push(`| ${label(c)} | ${route} | ${row.join(' | ')} |`);
    }
  }
  return lines.join('\n');
}

export function opsTable(summary: any, configs: string[]): string {
  return perRouteTable(
    summary,
    configs,
    ['get', 'set (incl. add)', 'touch', 'delete', 'total', 'client-side: get/set/add/delete/touch'],
    (x) => {
      const o = x.memcachedOpsPerRequest;
      if (!o) return undefined;
      const cl = x.clientOpsPerRequest;
      const client = cl
        ? ['get', 'set', 'add', 'delete', 'touch'].map((k) => (cl[k] ?? 0).toFixed(2)).join(' / ')
        : '-';
      return [o.get, o.set, o.touch, o.delete, o.total].map((n: number) => n.toFixed(2)).concat(client);
    },
  );
}

/** Per configuration with a baseline twin and route: new, base and new/base of CPU per request, req/s, memcached ops. */
export function baselineTable(summary: any, configs: string[]): string {
  const header = [
    'CPU µs/req new',
    'base',
    'CPU new/base',
    'req/s new',
    'base',
    'req/s new/base',
    'memcached ops/req new',
    'base',
    'verdict',
  ];
  const range = (xs: number[] | undefined) =>
    xs?.length ? ` [${Math.min(...xs).toFixed(3)}-${Math.max(...xs).toFixed(3)}]` : '';
  return perRouteTable(
    summary,
    configs.filter((c) => !isBase(c)),
    header,
    (x, config, route) => {
      if (x.cpuVsBaseline === undefined) return undefined;
      const b = summary[baseOf(config)][route];
      const ops = (y: any) => (y.memcachedOpsPerRequest ? y.memcachedOpsPerRequest.total.toFixed(2) : '-');
      return [
        x.cpuUsPerRequest.toFixed(1),
        b.cpuUsPerRequest.toFixed(1),
        fmtRatio3(x.cpuVsBaseline) + range(x.cpuVsBaselineRounds),
        Math.round(x.rps).toLocaleString('en-US'),
        Math.round(b.rps).toLocaleString('en-US'),
        fmtRatio3(x.vsBaseline) + range(x.vsBaselineRounds),
        ops(x),
        ops(b),
        x.cpuVsBaseline > 1 + SLOWER_THRESHOLD ? `**SLOWER (> ${100 * SLOWER_THRESHOLD}% CPU)**` : 'ok',
      ];
    },
  );
}

export function kernelTable(summary: any, configs: string[]): string {
  const header = [
    'read syscalls',
    'write syscalls',
    'voluntary switches',
    'involuntary switches',
    'minor faults',
    'CPU µs main thread',
    'CPU µs other threads',
    'CPU µs idle servers',
  ];
  return perRouteTable(summary, configs, header, (x) => {
    const k = x.kernelPerRequest;
    if (!k) return undefined;
    const cell = (n: number, digits: number) => (Number.isFinite(n) ? n.toFixed(digits) : '-');
    return [
      cell(k.readSyscalls, 2),
      cell(k.writeSyscalls, 2),
      cell(k.voluntarySwitches, 2),
      cell(k.involuntarySwitches, 2),
      cell(k.minorFaults, 2),
      cell(k.mainThreadUs, 0),
      cell(k.otherThreadsUs, 0),
      cell(k.idleServersUs, 1),
    ];
  });
}

// --- main ------------------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  // `<config>@<dir>` runs a configuration on another copy of lib/ (e.g. `git archive main lib | tar -x -C <dir>/..`,
  // inside this repository so its node_modules resolve): a change measured against the code before it, in one run.
  const known = [...ALL_CONFIGS, ...FLOOR_CONFIGS];
  const unknown = only.filter((c) => !known.includes(c.split('@')[0]));
  if (unknown.length) throw new Error(`--only: unknown ${unknown.join(', ')}; known: ${known.join(', ')}`);
  const experimental = only.filter((c) => c.includes('@'));
  const selected = only.length ? [...known.filter((c) => only.includes(c)), ...experimental] : ALL_CONFIGS;
  const source = sourceState();
  const changes = (src: { uncommitted: string[] }) =>
    src.uncommitted.length ? ` with uncommitted changes to ${src.uncommitted.join(', ')}` : '';
  console.log(`bench: commit ${source.commit}${changes(source)}`);
  // --baseline: each msm configuration right before its baseline twin (the rounds keep the two next to each other).
  const baseline = baselineArg ? compiledBaseline(baselineArg) : undefined;
  const wanted = baseline ? selected.flatMap((c) => (/^msm-[^@]*$/.test(c) ? [c, baseOf(c)] : [c])) : selected;
  if (baseline) {
    if (!wanted.some(isBase)) throw new Error('--baseline: no msm-* configuration selected to compare');
    console.log(
      `bench: baseline ${baseline.dir}, commit ${baseline.source.commit}${changes(baseline.source)}; its server and lib/ transpiled by ${baseline.transpiledWith}`,
    );
  }
  console.log(
    `bench: ${wanted.join(', ')}; ${settings.rounds} round(s) x ${settings.duration} s, ${settings.connections} connections over ${settings.sessions} sessions, warm-up ${settings.warmup} s; ${loader}; ${place.pinned ? `servers on cpu ${place.serverCpu}, load generator and backends on cpu ${place.loadCpu}` : `not pinned: ${place.reason}`}; results to ${outDir}`,
  );

  serverJs = compiledServer();
  for (const dir of new Set(['lib', ...experimental.map((c) => c.slice(c.indexOf('@') + 1))]))
    libJs.set(dir, compiledLib(dir));

  // This process only orchestrates; it stays off the servers' core.
  pinProcess(process.pid, place.loadCpu);
  const cleanup: (() => Promise<void> | void)[] = [];
  const onSignal = async () => {
    for (const f of cleanup.splice(0).reverse()) await f();
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const skipped: Record<string, string> = {};
  /** Configuration and route of runs with non-2xx answers or errors. */
  const invalid: string[] = [];
  const failed: Record<string, string> = {};
  const servers: Server[] = [];
  /** What each server process runs (GET /__runtime): script, lib/, node flags, whether TypeScript is loaded. */
  const runtimes: Record<string, Record<string, unknown>> = {};
  try {
    // Backends.
    const needMsm = wanted.some(onMsmNodes);
    const msmNodes: MemcachedProcess[] = [];
    let cmNode: MemcachedProcess | undefined;
    let redisUrl: string | undefined;
    let redisProc: ChildProcess | undefined;
    if (needMsm || wanted.includes('connect-memcached')) memcachedBinary();
    if (needMsm) {
      // Every msm configuration keeps its sessions on these two nodes (with --many-sessions, 10,000 each, copies
      // included): memcached's default 64 MB would evict them and the runs would measure requests without a session.
      const mb = String(Math.max(64, Math.ceil((wanted.length * (settings.sessions + settings.manySessions)) / 100)));
      for (let i = 0; i < 2; i++) {
        const m = await new MemcachedProcess(await freePort(), ['-m', mb]).start();
        msmNodes.push(m);
        cleanup.push(() => m.kill());
        pinProcess(m.proc?.pid, place.loadCpu);
      }
    }
    if (wanted.includes('connect-memcached')) {
      const m = await new MemcachedProcess(await freePort()).start();
      cmNode = m;
      cleanup.push(() => m.kill());
      pinProcess(m.proc?.pid, place.loadCpu);
    }
    if (wanted.includes('connect-redis')) {
      const bin = redisBinary();
      if (bin) {
        const r = await startRedis(bin);
        redisUrl = `redis://127.0.0.1:${r.port}`;
        redisProc = r.proc;
        pinProcess(r.proc.pid, place.loadCpu);
        cleanup.push(async () => {
          if (r.proc.exitCode !== null) return;
          const exited = new Promise((res) => r.proc.once('exit', res));
          r.proc.kill('SIGTERM');
          await exited;
        });
      }
    }
    const env: NodeJS.ProcessEnv = {
      BENCH_MSM_NODES: msmNodes.map((m, i) => `n${i + 1}:127.0.0.1:${m.port}`).join(','),
      BENCH_MEMCACHED: cmNode ? `127.0.0.1:${cmNode.port}` : '',
      BENCH_REDIS_URL: redisUrl ?? '',
    };
    if (!env.BENCH_MEMCACHED) delete env.BENCH_MEMCACHED;
    if (!env.BENCH_REDIS_URL) delete env.BENCH_REDIS_URL;

    // Servers, each with its own sessions.
    for (const name of wanted) {
      const r = await startServer(serverSpec(name, baseline), env);
      if (r.skip) {
        skipped[name] = r.skip;
        console.log(`note: skipping ${name}: ${r.skip}`);
        continue;
      }
      if (r.error || !r.server) {
        failed[name] = r.error ?? 'no server';
        console.log(`error: ${name} did not start: ${failed[name]}`);
        continue;
      }
      const { proc, port } = r.server;
      cleanup.push(() => stopServer(proc));
      try {
        const cookies = await createSessions(port, settings.sessions);
        const msm = onMsmNodes(name);
        const statPorts = msm
          ? msmNodes.map((m) => m.port)
          : name === 'connect-memcached' && cmNode
            ? [cmNode.port]
            : [];
        const backends = msm
          ? msmNodes.map((m) => m.proc)
          : name === 'connect-memcached'
            ? [cmNode?.proc]
            : name === 'connect-redis'
              ? [redisProc]
              : [];
        const backendPids = backends.map((p) => p?.pid).filter((p): p is number => typeof p === 'number');
        const manyCookies = settings.manySessions > 0 ? await createSessions(port, settings.manySessions) : [];
        servers.push({
          name,
          proc,
          port,
          cookies,
          manyCookies,
          cursor: { few: 0, many: 0 },
          statPorts,
          backendPids,
          msm,
        });
        runtimes[name] = await serverRuntime(port);
      } catch (e) {
        failed[name] = (e as Error).message;
        console.log(`error: ${name}: ${failed[name]}`);
      }
    }
    if (!servers.length) throw new Error('no configuration could be started');

    // Warm-up (JIT, connection pools), not recorded.
    if (settings.warmup > 0) {
      for (const s of servers) for (const route of ROUTES) await load(s, route, settings.warmup);
    }

    // Rounds, configurations in alternation. Each round starts one configuration later (A B C, B C A, C A B ...):
    // with a fixed order, whatever the previous configuration leaves behind (its backends' background work, the
    // load generator's garbage) would always hit the same next one.
    // A configuration and its baseline twin rotate as one group and run back to back, the two in turn first.
    const groups: Server[][] = servers
      .filter((s) => !isBase(s.name))
      .map((s) => [s, ...servers.filter((b) => b.name === baseOf(s.name))]);
    for (const b of servers) if (isBase(b.name) && !groups.some((g) => g.includes(b))) groups.push([b]);
    const runs: any[] = [];
    for (let round = 1; round <= settings.rounds; round++) {
      const shift = (round - 1) % groups.length;
      const order = [...groups.slice(shift), ...groups.slice(0, shift)].flatMap((g) =>
        round % 2 ? g : [...g].reverse(),
      );
      // Route outermost: one route's measurements of every configuration follow each other, close in time.
      for (const route of ROUTES) {
        for (const s of order) {
          const before = s.statPorts.length ? await memcachedOps(s.statPorts) : undefined;
          const cBefore = s.msm ? await clientOps(s.port) : undefined;
          const cpuBefore = await serverCpu(s.port);
          const backendBefore = procCpuUs(s.backendPids);
          const kernelBefore = procCounters(s.proc.pid);
          // The other servers idle on the same core meanwhile; their timers (probes, purges) take from it.
          const idlePids = servers.filter((o) => o !== s).map((o) => o.proc.pid!);
          const idleBefore = procCpuUs(idlePids);
          const m = await load(s, route, settings.duration);
          const kernelAfter = procCounters(s.proc.pid);
          const kernel =
            kernelBefore && kernelAfter
              ? { ...diffOps(kernelBefore, kernelAfter), idleServersUs: procCpuUs(idlePids) - idleBefore }
              : undefined;
          const cpuUsPerRequest = ((await serverCpu(s.port)) - cpuBefore) / Math.max(1, m.requests);
          const backendCpuUsPerRequest = s.backendPids.length
            ? (procCpuUs(s.backendPids) - backendBefore) / Math.max(1, m.requests)
            : 0;
          let mcOps: MemcachedOps | undefined;
          let cOps: Record<string, number> | undefined;
          if (before) {
            await sleep(150); // let asynchronous backups land
            mcOps = diffOps(before, await memcachedOps(s.statPorts));
          }
          if (cBefore) cOps = diffOps(cBefore, await clientOps(s.port));
          runs.push({
            round,
            config: s.name,
            route,
            ...m,
            cpuUsPerRequest,
            backendCpuUsPerRequest,
            memcachedOps: mcOps,
            clientOps: cOps,
            kernel,
          });
          const bad = m.non2xx + m.errors + m.timeouts;
          console.log(
            `  round ${round} ${pad(s.name, baseline ? 24 : 18)} ${pad(route, 5)} ${pad(Math.round(m.rps).toString(), 6, true)} req/s  p50 ${m.p50} ms  p99 ${m.p99} ms  cpu ${cpuUsPerRequest.toFixed(0)}+${backendCpuUsPerRequest.toFixed(0)} µs/req${bad ? `  (non-2xx ${m.non2xx}, errors ${m.errors}, timeouts ${m.timeouts})` : ''}`,
          );
        }
      }
    }

    // Medians and ratios.
    const summary: Record<string, any> = {};
    for (const s of servers) {
      summary[s.name] = {};
      for (const route of ROUTES) {
        const rs = runs.filter((r) => r.config === s.name && r.route === route);
        const requests = rs.reduce((a, r) => a + r.requests, 0);
        const perRequest = (key: 'memcachedOps' | 'clientOps' | 'kernel') => {
          if (!rs[0]?.[key] || !requests) return undefined;
          const out: Record<string, number> = {};
          for (const r of rs) for (const [k, v] of Object.entries<number>(r[key])) out[k] = (out[k] ?? 0) + v;
          for (const k of Object.keys(out)) out[k] = out[k] / requests;
          return out;
        };
        summary[s.name][route] = {
          rps: median(rs.map((r) => r.rps)),
          p50: median(rs.map((r) => r.p50)),
          p99: median(rs.map((r) => r.p99)),
          cpuUsPerRequest: median(rs.map((r) => r.cpuUsPerRequest)),
          backendCpuUsPerRequest: median(rs.map((r) => r.backendCpuUsPerRequest)),
          requests,
          non2xx: rs.reduce((a, r) => a + r.non2xx, 0),
          errors: rs.reduce((a, r) => a + r.errors + r.timeouts, 0),
          memcachedOpsPerRequest: perRequest('memcachedOps'),
          clientOpsPerRequest: perRequest('clientOps'),
          kernelPerRequest: perRequest('kernel'),
        };
      }
    }
    // Ratios are paired: each round's req/s over the baseline's in the same round, then the median of those. The
    // machine drifts by tens of percent over a run; within one round the configurations run minutes apart at most.
    // The ratio of the medians is kept too (`...OfMedians`).
    const roundRatios = (
      config: string,
      base: string,
      route: Route,
      key: 'rps' | 'cpuUsPerRequest' = 'rps',
    ): number[] => {
      const ratios: number[] = [];
      for (let round = 1; round <= settings.rounds; round++) {
        const a = runs.find((r) => r.config === config && r.route === route && r.round === round);
        const b = runs.find((r) => r.config === base && r.route === route && r.round === round);
        if (a && b && b[key] > 0) ratios.push(a[key] / b[key]);
      }
      return ratios;
    };
    const pairedRatio = (config: string, base: string, route: Route): number =>
      median(roundRatios(config, base, route));
    for (const c of Object.keys(summary)) {
      for (const route of ROUTES) {
        const x = summary[c][route];
        // CPU per request against the store each configuration is judged by (CPU_AGAINST), paired per round.
        const against = CPU_AGAINST[c.replace(BASE_SUFFIX, '')];
        if (against && summary[against]) x.cpuVsAgainst = median(roundRatios(c, against, route, 'cpuUsPerRequest'));
        if (summary.memory) {
          x.vsMemory = pairedRatio(c, 'memory', route);
          x.vsMemoryOfMedians = x.rps / summary.memory[route].rps;
        }
        if (summary['connect-redis']) {
          x.vsRedis = pairedRatio(c, 'connect-redis', route);
          x.vsRedisOfMedians = x.rps / summary['connect-redis'][route].rps;
        }
        const bare = BARE_OF[c];
        if (bare && summary[bare]) {
          x.vsBare = pairedRatio(c, bare, route);
          x.vsBareOfMedians = x.rps / summary[bare][route].rps;
        }
        // Against the baseline's code: new/base per round, req/s and the server's CPU per request.
        const base = summary[baseOf(c)]?.[route];
        if (base) {
          const rps = roundRatios(c, baseOf(c), route, 'rps');
          const cpu = roundRatios(c, baseOf(c), route, 'cpuUsPerRequest');
          x.vsBaseline = median(rps);
          x.cpuVsBaseline = median(cpu);
          x.vsBaselineOfMedians = x.rps / base.rps;
          x.cpuVsBaselineOfMedians = x.cpuUsPerRequest / base.cpuUsPerRequest;
          x.vsBaselineRounds = rps;
          x.cpuVsBaselineRounds = cpu;
        }
      }
    }
    // Flagged by CPU per request (steadier than req/s on a shared machine); req/s goes beside it.
    const slower = baseline
      ? Object.keys(summary)
          .filter((c) => !isBase(c))
          .flatMap((c) =>
            ROUTES.filter((route) => summary[c][route]?.cpuVsBaseline > 1 + SLOWER_THRESHOLD).map((route) => ({
              config: c,
              route,
              cpuVsBaseline: summary[c][route].cpuVsBaseline,
              vsBaseline: summary[c][route].vsBaseline,
            })),
          )
      : [];

    const configs = servers.map((s) => s.name);
    const payload = payloadBytes();
    const results = {
      date: new Date().toISOString(),
      machine: {
        cpus: os.cpus().length,
        cpuModel: os.cpus()[0]?.model,
        node: process.version,
        platform: `${os.platform()} ${os.release()}`,
      },
      harness: {
        loadGenerator: loader === 'wrk' ? `wrk (${wrk}), 1 thread` : 'autocannon, in its own process',
        pinned: place.pinned,
        ...(place.pinned
          ? { serverCpu: place.serverCpu, loadGeneratorCpu: place.loadCpu, backendsCpu: place.loadCpu }
          : { notPinned: place.reason }),
        serverProcess: `one node process per configuration (bench/server.ts), Express 5 + express-session; servers run JavaScript transpiled before the run (bench/.work/js), no TypeScript compiler in their heap; node ${SERVER_V8_FLAGS.join(' ')}`,
        serverRuntimes: runtimes,
        sessions: `${settings.sessions} logged-in sessions, every request carries the next one's cookie`,
        manySessions:
          settings.manySessions > 0
            ? `routes ending in ${MANY}: ${settings.manySessions} more sessions, visited in turn (each run starts where the last stopped)`
            : 'off',
        ratios: "paired: each round's req/s over the baseline's in the same round, median over rounds",
        published: publish,
        source,
      },
      settings,
      configs,
      labels: Object.fromEntries(configs.map((c) => [c, label(c)])),
      skipped,
      failed,
      payloadBytes: payload,
      targets: targets(summary, payload),
      summary,
      runs,
      ...(baseline
        ? {
            baseline: {
              dir: baseline.dir,
              source: baseline.source,
              transpiledWith: baseline.transpiledWith,
              pairs: Object.fromEntries(configs.filter((c) => configs.includes(baseOf(c))).map((c) => [c, baseOf(c)])),
              ratios:
                "new/base per round (the two run back to back), median over rounds: vsBaseline of req/s, cpuVsBaseline of the server's CPU per request; the rounds' ratios in vsBaselineRounds, cpuVsBaselineRounds",
              threshold: SLOWER_THRESHOLD,
              slower,
            },
          }
        : {}),
    };

    const how = `medians of ${settings.rounds} round(s) x ${settings.duration} s (ratios: median of each round's ratio), ${settings.connections} connections, ${loader}, ${place.pinned ? 'server and load generator pinned to separate cores' : 'not pinned'}`;
    const sets: [string, number][] = [['', settings.sessions]];
    if (settings.manySessions > 0) sets.push([MANY, settings.manySessions]);
    for (const [suffix, n] of sets) {
      console.log('');
      console.log(
        `CPU per request, server (all threads), µs; ${n.toLocaleString('en-US')} sessions${suffix ? ` (each visited every ${(n / Math.max(1, summary[configs[0]]?.[`read${suffix}`]?.rps ?? 1)).toFixed(1)} s or so)` : ''}; ${how}:`,
      );
      console.log(cpuTable(summary, configs, suffix));
    }
    for (const [suffix, n] of sets) {
      console.log('');
      console.log(`Requests per second, ${n.toLocaleString('en-US')} sessions; ${how}:`);
      console.log(markdownTable(summary, configs, suffix));
    }
    console.log('');
    console.log('Memcached operations per request (memcached `stats` deltas; add counts in cmd_set):');
    console.log(opsTable(summary, configs));
    console.log('');
    console.log("The server's kernel counters per request (/proc/<pid>/io, status, stat):");
    console.log(kernelTable(summary, configs));
    if (Object.keys(payload).length) console.log(`\nBench session size: ${JSON.stringify(payload)} bytes`);
    if (baseline) {
      console.log(
        `\nAgainst the baseline ${baseline.dir} (commit ${baseline.source.commit}${changes(baseline.source)}): new/base, median of each round's ratio [lowest-highest round]:`,
      );
      console.log(baselineTable(summary, configs));
      if (settings.rounds < 6)
        console.log(
          `(${settings.rounds} round(s): too few to tell ${100 * SLOWER_THRESHOLD}% from noise; use 6 or more)`,
        );
      if (slower.length) {
        for (const x of slower)
          console.log(
            `SLOWER than the baseline by more than ${100 * SLOWER_THRESHOLD}% CPU per request: ${label(x.config)} ${x.route}: CPU ${fmtRatio3(x.cpuVsBaseline)}, req/s ${fmtRatio3(x.vsBaseline)}`,
          );
      } else {
        console.log(
          `No configuration more than ${100 * SLOWER_THRESHOLD}% slower than the baseline (CPU per request).`,
        );
      }
    }
    if (results.targets.length) {
      console.log('\nTargets (ratios paired per round):');
      for (const t of results.targets) console.log(`  ${t.met ? 'met    ' : 'NOT met'}  ${t.target}: ${t.measured}`);
    }
    // A run with failed requests measured something else (e.g. requests without a session): said, and the exit code.
    for (const c of configs) {
      for (const route of ROUTES) {
        const x = summary[c]?.[route];
        if (x && x.non2xx + x.errors > 0) {
          invalid.push(`${label(c)} ${route}`);
          console.log(
            `INVALID: ${label(c)} ${route}: ${x.non2xx} non-2xx responses, ${x.errors} errors of ${x.requests} requests`,
          );
        }
      }
    }
    for (const [c, why] of Object.entries(skipped)) console.log(`skipped ${c}: ${why}`);
    for (const [c, why] of Object.entries(failed)) console.log(`FAILED ${c}: ${why}`);

    fs.mkdirSync(outDir, { recursive: true });
    fs.writeFileSync(path.join(outDir, 'results.json'), JSON.stringify(results, null, 2) + '\n');
    fs.writeFileSync(path.join(outDir, 'results.svg'), renderSvg(results));
    console.log(`\nwrote ${path.relative(process.cwd(), path.join(outDir, 'results.json'))} and results.svg`);
  } finally {
    for (const f of cleanup.splice(0).reverse()) {
      try {
        await f();
      } catch {
        /* keep stopping the rest */
      }
    }
  }
  if (Object.keys(failed).length || invalid.length) process.exitCode = 1;
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
