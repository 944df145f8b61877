// Keeps `npm run bench` working: one very short round with two configurations, on autocannon (the fallback when
// wrk is not installed, so the test needs no wrk). No speed assertions.
import { execFile, execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');

/** One short round of `only` on autocannon into a temporary folder: stdout and results.json. */
async function shortRun(
  only: string,
  out: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ stdout: string; results: any }> {
  const stdout = await new Promise<string>((resolve, reject) => {
    execFile(
      process.execPath,
      ['-r', './scripts/register.js', 'bench/run.ts'],
      {
        cwd: ROOT,
        timeout: 90_000,
        env: {
          ...process.env,
          BENCH_ONLY: only,
          BENCH_DURATION: '1',
          BENCH_ROUNDS: '1',
          BENCH_WARMUP: '0',
          BENCH_CONNECTIONS: '4',
          BENCH_SESSIONS: '8',
          BENCH_MANY_SESSIONS: '0',
          BENCH_LOADER: 'autocannon',
          BENCH_OUT: out,
          ...env,
        },
      },
      (err, so, se) => (err ? reject(new Error(`${err.message}\n${so}\n${se}`)) : resolve(so)),
    );
  });
  return { stdout, results: JSON.parse(fs.readFileSync(path.join(out, 'results.json'), 'utf8')) };
}

test('bench runs one short round and writes results.json and results.svg', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-bench-'));
  try {
    const { stdout, results } = await shortRun('memory,msm-json', out);
    expect(stdout).toContain('| configuration |');
    expect(results.configs).toEqual(['memory', 'msm-json']);
    expect(results.settings).toMatchObject({ duration: 1, rounds: 1, connections: 4, sessions: 8 });
    expect(results.harness).toMatchObject({ loadGenerator: 'autocannon, in its own process', published: false });
    expect(typeof results.harness.pinned).toBe('boolean');
    // The commit measured, and what differed from it (this checkout: whatever the developer has not committed).
    const head = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {
      cwd: path.join(__dirname, '..', '..'),
      encoding: 'utf8',
    }).trim();
    expect(results.harness.source.commit).toBe(head);
    expect(Array.isArray(results.harness.source.uncommitted)).toBe(true);
    for (const c of ['memory', 'msm-json']) {
      for (const route of ['read', 'write']) {
        const x = results.summary[c][route];
        expect(x.rps).toBeGreaterThan(0);
        expect(x.requests).toBeGreaterThan(0);
        expect(x.non2xx).toBe(0);
        expect(x.vsMemory).toBeGreaterThan(0);
      }
    }
    // The cost model: express-msm reads and writes memcached on every request.
    expect(results.summary['msm-json'].read.memcachedOpsPerRequest.total).toBeGreaterThan(0);
    expect(results.summary['msm-json'].write.memcachedOpsPerRequest.set).toBeGreaterThan(0);
    expect(results.runs).toHaveLength(4);
    // The servers run JavaScript compiled before the run (no TypeScript compiler in their heap), with the harness's
    // V8 flag, as each server process reports of itself.
    const jsRoot = path.join(__dirname, '..', '..', 'bench', '.work', 'js');
    for (const c of ['memory', 'msm-json']) {
      const rt = results.harness.serverRuntimes[c];
      expect(rt).toMatchObject({
        script: path.join(jsRoot, 'bench', 'server.js'),
        lib: path.join(jsRoot, 'lib'),
        typescriptLoaded: false,
      });
      expect(rt.execArgv).toContain('--no-flush-bytecode');
      expect(rt.execArgv).toContain('--no-memory-reducer');
    }
    expect(fs.existsSync(path.join(jsRoot, 'lib', 'index.js'))).toBe(true);
    // Kernel counters: every response takes at least one write syscall and every request one read.
    const kernel = results.summary.memory.read.kernelPerRequest;
    expect(kernel.writeSyscalls).toBeGreaterThanOrEqual(1);
    expect(kernel.readSyscalls).toBeGreaterThanOrEqual(1);
    expect(kernel.mainThreadUs).toBeGreaterThan(0);
    expect(fs.readFileSync(path.join(out, 'results.svg'), 'utf8')).toMatch(/^<svg[\s\S]*<\/svg>\n$/);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}, 120_000);

// CPU per request comes first, judged against the store each mode is compared with; every route runs again over
// the many-sessions set.
test('the CPU table comes first, with ratios; the many-sessions set is measured beside the small one', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-bench-'));
  try {
    const { stdout, results } = await shortRun('memory,msm-sticky', out, { BENCH_MANY_SESSIONS: '40' });
    expect(results.settings).toMatchObject({ sessions: 8, manySessions: 40 });
    expect(results.runs).toHaveLength(8);
    for (const route of ['read', 'write', 'read@many', 'write@many']) {
      for (const c of ['memory', 'msm-sticky']) {
        expect(results.summary[c][route].requests).toBeGreaterThan(0);
        expect(results.summary[c][route].non2xx).toBe(0);
      }
      const x = results.summary['msm-sticky'][route];
      expect(x.cpuVsAgainst).toBeCloseTo(x.cpuUsPerRequest / results.summary.memory[route].cpuUsPerRequest, 6);
    }
    const cpuAt = stdout.indexOf('CPU per request, server (all threads), µs; 8 sessions');
    const manyAt = stdout.indexOf('CPU per request, server (all threads), µs; 40 sessions');
    expect(cpuAt).toBeGreaterThanOrEqual(0);
    expect(manyAt).toBeGreaterThan(cpuAt);
    expect(stdout.indexOf('Requests per second, 8 sessions')).toBeGreaterThan(manyAt);
    expect(stdout).toMatch(/\| msm sticky JSON \| \d+ \(\d+\.\d\dx\) \| \d+ \(\d+\.\d\dx\) \| MemoryStore \|/);
    expect(results.targets.map((t: { target: string }) => t.target)).toContain(
      'msm sticky JSON write CPU/req <= 1.15x MemoryStore',
    );
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}, 120_000);

// The floors bound msm's cost from below only if they send what msm sends: memcached's own counts must match.
test('the floors send the memcached operations of the modes they stand for', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-bench-'));
  try {
    const { results } = await shortRun('msm-json,msm-sticky,floor-non-sticky,floor-sticky', out);
    expect(results.configs).toEqual(['msm-json', 'msm-sticky', 'floor-sticky', 'floor-non-sticky']);
    const ops = (c: string, route: string) => {
      const { get, set } = results.summary[c][route].memcachedOpsPerRequest;
      return { get: Math.round(get), set: Math.round(set) };
    };
    for (const route of ['read', 'write']) {
      expect(results.summary['floor-non-sticky'][route].non2xx).toBe(0);
      expect(results.summary['floor-sticky'][route].non2xx).toBe(0);
      expect(ops('floor-non-sticky', route)).toEqual(ops('msm-json', route));
      expect(ops('floor-sticky', route)).toEqual(ops('msm-sticky', route));
    }
    expect(ops('floor-non-sticky', 'write')).toEqual({ get: 3, set: 4 });
    expect(ops('floor-sticky', 'write')).toEqual({ get: 0, set: 1 });
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
  }
}, 120_000);

// --baseline: the same msm configuration on another checkout's server and lib/, in the same round, and the ratios.
test('--baseline runs each msm configuration on the other checkout too and reports new/base', async () => {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-bench-'));
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-bench-base-'));
  try {
    // A checkout without git: its code, a link to the dependencies.
    for (const f of ['lib', 'bench/server.ts', 'bench/floor.ts', 'scripts/register.js'])
      fs.cpSync(path.join(ROOT, f), path.join(base, f), { recursive: true });
    fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(base, 'node_modules'), 'dir');
    const { stdout, results } = await shortRun('memory,msm-json', out, { BENCH_BASELINE: base });
    expect(results.configs).toEqual(['memory', 'msm-json', 'msm-json @base']);
    expect(results.labels['msm-json @base']).toBe('msm non-sticky JSON @base');
    expect(results.runs).toHaveLength(6);
    // The twin ran the baseline's code, transpiled beside a link to its node_modules.
    const baseJs = path.join(ROOT, 'bench', '.work', 'js', 'baseline');
    expect(results.harness.serverRuntimes['msm-json @base']).toMatchObject({
      script: path.join(baseJs, 'bench', 'server.js'),
      lib: path.join(baseJs, 'lib'),
      typescriptLoaded: false,
    });
    expect(fs.realpathSync(path.join(baseJs, 'node_modules'))).toBe(fs.realpathSync(path.join(base, 'node_modules')));
    expect(results.baseline).toMatchObject({ dir: base, threshold: 0.03, pairs: { 'msm-json': 'msm-json @base' } });
    expect(Array.isArray(results.baseline.slower)).toBe(true);
    for (const route of ['read', 'write']) {
      const x = results.summary['msm-json'][route];
      const b = results.summary['msm-json @base'][route];
      expect(b.non2xx).toBe(0);
      expect(x.vsBaseline).toBeCloseTo(x.rps / b.rps, 6);
      expect(x.cpuVsBaseline).toBeCloseTo(x.cpuUsPerRequest / b.cpuUsPerRequest, 6);
      // The same code sends the same memcached operations.
      expect(Math.round(b.memcachedOpsPerRequest.set)).toBe(Math.round(x.memcachedOpsPerRequest.set));
    }
    expect(results.summary.memory.read.vsBaseline).toBeUndefined();
    expect(stdout).toMatch(/Against the baseline .*\n\| configuration \| route \| CPU µs\/req new/);
    expect(stdout).toMatch(/\| msm non-sticky JSON \| write \| [^\n]*\| (ok|\*\*SLOWER[^|]*) \|/);
  } finally {
    fs.rmSync(out, { recursive: true, force: true });
    fs.rmSync(base, { recursive: true, force: true });
  }
}, 120_000);
