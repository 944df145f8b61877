// Chaos run: 3 memcached nodes, 2 app instances (non-sticky, lockingMode all), N sessions; requests
// increment per-session counters while a schedule kills (-9), stops (SIGSTOP/SIGCONT) and restarts memcached nodes
// one at a time, and kills/restarts one app instance. At the end every session must be present with
// counter == increments acknowledged (2xx). `npm run chaos` (CHAOS_SECONDS, CHAOS_SESSIONS, CHAOS_CONCURRENCY);
// `npm run chaos -- --zones`: 6 nodes in 3 zones, a whole zone faulted at a time (CHAOS_BACKUP_COUNT).
// The short version in the test suite is test/system/chaos.test.ts (runChaos with a small schedule).
import { type ChildProcess, fork } from 'child_process';
import * as http from 'http';
import * as path from 'path';
import { type MemcachedProcess, freePort, killAll, nodesString, startMemcacheds } from '../test/helpers/memcached';
import { readJsonReply } from '../test/helpers/session-http';
import { ConfigEndpoint } from '../test/helpers/config-endpoint';

const SECRET = 'chaos-secret';
const signature: { sign(v: string, s: string): string } = require('cookie-signature');

export type FaultAction =
  | { at: number; kind: 'kill' | 'restart' | 'stop' | 'cont'; node: number }
  // The configuration endpoint starts listing the node (join) or stops listing it (leave; its process is killed
  // once the apps have had time to poll: as a managed service retires a removed node).
  | { at: number; kind: 'join' | 'leave'; node: number }
  | { at: number; kind: 'appKill' | 'appRestart'; app: number };

export interface ChaosOptions {
  sessions: number;
  /** ms of load after the sessions are created. */
  durationMs: number;
  concurrency: number;
  schedule: FaultAction[];
  /** Nodes from a configuration endpoint even without joins or leaves (CHAOS_DISCOVERY=1). */
  discovery?: boolean;
  operationTimeout?: number;
  /** Memcached nodes started (at least 3). */
  nodes?: number;
  /** The apps' `zones` and `backupCount` options (`npm run chaos -- --zones`). */
  zones?: Record<string, string>;
  backupCount?: number;
  /** ms; a request slower than this counts as failed (timeout). */
  requestTimeoutMs?: number;
  log?: (line: string) => void;
}

interface Sample {
  t: number;
  ms: number;
  status: number | 'timeout' | 'error';
}

export interface ChaosReport {
  sessions: number;
  requests: number;
  acknowledged: number;
  sessionsLost: number;
  updatesLost: number;
  /** Counter above acknowledged + unacknowledged attempts: an increment applied twice. */
  phantomUpdates: number;
  requestsFailed: number;
  failuresOutsideFaults: number;
  failures: Array<{ t: number; status: Sample['status']; error?: string }>;
  latency: { p50: number; p99: number; max: number };
  windows: Array<{
    label: string;
    from: number;
    to: number;
    requests: number;
    failed: number;
    p50: number;
    p99: number;
    max: number;
  }>;
  lostDetail: string[];
  /** Addresses of the nodes the configuration listed at the end, and of the nodes each app used at the end. */
  listedNodes: string[];
  appNodes: string[][];
}

class App {
  proc: ChildProcess | undefined;
  up = false;
  /** `nodes`: memcachedNodes, or `discovery:<host:port>` for a configuration endpoint. */
  constructor(
    readonly port: number,
    private readonly nodes: string,
    private readonly opTimeout: number,
    private readonly extraEnv: Record<string, string> = {},
  ) {}

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const p = fork(path.join(__dirname, 'chaos-app.ts'), [], {
        execArgv: ['-r', path.join(__dirname, 'register.js')],
        env: {
          ...process.env,
          CHAOS_PORT: String(this.port),
          CHAOS_OP_TIMEOUT: String(this.opTimeout),
          ...this.extraEnv,
          ...(this.nodes.startsWith('discovery:')
            ? { CHAOS_DISCOVERY: this.nodes.slice('discovery:'.length) }
            : { CHAOS_NODES: this.nodes }),
        },
        stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      });
      this.proc = p;
      const t = setTimeout(() => reject(new Error(`app on ${this.port} did not start`)), 20_000);
      p.once('message', () => {
        clearTimeout(t);
        this.up = true;
        resolve();
      });
      p.once('exit', () => {
        this.up = false;
      });
    });
  }

  async kill(): Promise<void> {
    const p = this.proc;
    this.up = false;
    if (!p || p.exitCode !== null || p.signalCode) return;
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
  }
}

function percentile(sorted: number[], q: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

function summary(samples: Sample[]): { p50: number; p99: number; max: number } {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  const r = (x: number) => Math.round(x * 10) / 10;
  return { p50: r(percentile(ms, 0.5)), p99: r(percentile(ms, 0.99)), max: r(ms.length ? ms[ms.length - 1] : 0) };
}

const cookieFor = (id: string) => 'connect.sid=' + encodeURIComponent('s:' + signature.sign(id, SECRET));

export async function runChaos(opts: ChaosOptions): Promise<ChaosReport> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const opTimeout = opts.operationTimeout ?? 1000;
  const requestTimeout = opts.requestTimeoutMs ?? opTimeout * 6 + 2000;
  // Joins and leaves need a node list that changes: the apps then read it from a configuration endpoint.
  const discovery = opts.discovery || opts.schedule.some((f) => f.kind === 'join' || f.kind === 'leave');
  const joining = new Set(opts.schedule.filter((f) => f.kind === 'join').map((f) => (f as { node: number }).node));
  const nodes: MemcachedProcess[] = await startMemcacheds(
    Math.max(3, opts.nodes ?? 0, ...[...joining].map((n) => n + 1)),
  );
  const listed = new Set(nodes.map((_, i) => i).filter((i) => !joining.has(i)));
  const endpoint = discovery ? await ConfigEndpoint.start() : undefined;
  const list = () => endpoint?.setNodes([...listed].sort().map((i) => nodes[i].port));
  list();
  const spec = endpoint ? `discovery:${endpoint.address}` : nodesString(nodes);
  const env: Record<string, string> = {
    ...(opts.zones ? { CHAOS_ZONES: JSON.stringify(opts.zones) } : {}),
    ...(opts.backupCount !== undefined ? { CHAOS_BACKUP_COUNT: String(opts.backupCount) } : {}),
  };
  const apps = [new App(await freePort(), spec, opTimeout, env), new App(await freePort(), spec, opTimeout, env)];
  const retiring: Array<Promise<void>> = [];
  const agent = new http.Agent({ keepAlive: true, maxSockets: opts.concurrency * 2 });
  try {
    await Promise.all(apps.map((a) => a.start()));

    function call(app: App, method: string, p: string, cookie?: string): Promise<{ status: number; body: any }> {
      return new Promise((resolve, reject) => {
        const req = http.request(
          { host: '127.0.0.1', port: app.port, path: p, method, agent, headers: cookie ? { cookie } : {} },
          (res) => {
            readJsonReply(res).then(resolve, reject);
          },
        );
        req.setTimeout(requestTimeout, () => req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })));
        req.on('error', reject);
        req.end();
      });
    }
    const liveApp = () => {
      const up = apps.filter((a) => a.up);
      return up[Math.floor(Math.random() * up.length)] ?? apps[0];
    };

    // --- create sessions
    const ids: string[] = [];
    const acked: number[] = [];
    const attempted: number[] = [];
    const busy: boolean[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: opts.concurrency }, async () => {
        while (next < opts.sessions) {
          const i = next++;
          const r = await call(apps[i % 2], 'POST', '/inc');
          if (r.status !== 200) throw new Error(`creating session ${i}: ${r.status} ${JSON.stringify(r.body)}`);
          ids[i] = r.body.id;
          acked[i] = 1;
          attempted[i] = 0;
          busy[i] = false;
        }
      }),
    );
    log(
      `created ${opts.sessions} sessions on 2 app instances, ${listed.size} memcached nodes`
        + (opts.zones ? ` in zones ${JSON.stringify(opts.zones)}, backupCount ${opts.backupCount ?? 1}` : '')
        + ` (${[...listed].map((i) => nodes[i].port).join(', ')})`
        + (endpoint ? `, listed by a configuration endpoint (autoDiscovery) on ${endpoint.port}` : ''),
    );

    // --- load + fault schedule
    const samples: Sample[] = [];
    const history: string[][] = ids.map(() => []);
    const failures: ChaosReport['failures'] = [];
    const t0 = Date.now();
    const windows: Array<{ label: string; from: number; to: number }> = [];
    const open = new Map<string, { label: string; from: number }>();
    let stop = false;

    const faults = (async () => {
      for (const f of [...opts.schedule].sort((a, b) => a.at - b.at)) {
        const wait = t0 + f.at - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        const now = Date.now() - t0;
        if ('node' in f) {
          const n = nodes[f.node];
          const key = `n${f.node + 1}`;
          if (f.kind === 'kill') {
            await n.kill();
            open.set(key, { label: `kill -9 n${f.node + 1}`, from: now });
          } else if (f.kind === 'stop') {
            await n.stop();
            open.set(key, { label: `SIGSTOP n${f.node + 1}`, from: now });
          } else if (f.kind === 'cont') n.cont();
          else if (f.kind === 'restart') await n.start();
          else if (f.kind === 'join' || f.kind === 'leave') {
            if (f.kind === 'join') listed.add(f.node);
            else listed.delete(f.node);
            list();
            // Counted as a fault window until both apps have polled (interval 200 ms) and moved what had to move.
            windows.push({ label: `${f.kind} n${f.node + 1}`, from: now, to: now + 2000 });
            if (f.kind === 'leave') retiring.push(new Promise((r) => setTimeout(r, 2000)).then(() => n.kill()));
          }
          if (f.kind === 'cont' || f.kind === 'restart') {
            const o = open.get(key);
            if (o) windows.push({ label: `${o.label} .. ${f.kind}`, from: o.from, to: now });
            open.delete(key);
          }
        } else {
          const a = apps[f.app];
          const key = `app${f.app}`;
          if (f.kind === 'appKill') {
            await a.kill();
            open.set(key, { label: `kill -9 app ${f.app + 1}`, from: now });
          } else {
            await a.start();
            const o = open.get(key);
            if (o) windows.push({ label: `${o.label} .. restart`, from: o.from, to: Date.now() - t0 });
            open.delete(key);
          }
        }
        log(`${String(now).padStart(6)} ms  ${f.kind} ${'node' in f ? `n${f.node + 1}` : `app ${f.app + 1}`}`);
      }
    })();

    const driver = async () => {
      while (!stop) {
        let i = Math.floor(Math.random() * opts.sessions);
        for (let k = 0; busy[i] && k < opts.sessions; k++) i = (i + 1) % opts.sessions;
        if (busy[i]) {
          await new Promise((r) => setTimeout(r, 1));
          continue;
        }
        busy[i] = true;
        const app = liveApp();
        const started = performance.now();
        const t = Date.now() - t0;
        let status: Sample['status'];
        try {
          const r = await call(app, 'POST', '/inc', cookieFor(ids[i]));
          status = r.status;
          if (r.status === 200 && typeof r.body?.n === 'number') {
            acked[i]++;
            history[i].push(
              `${t}ms app${apps.indexOf(app) + 1} ${ids[i].slice(-3)}->${String(r.body.id).slice(-3)} n=${r.body.n}`,
            );
            ids[i] = r.body.id;
          } else {
            attempted[i]++;
            failures.push({
              t,
              status,
              error: typeof r.body === 'object' ? r.body?.error : String(r.body).slice(0, 200),
            });
          }
        } catch (e) {
          attempted[i]++;
          status = (e as any).code === 'TIMEOUT' ? 'timeout' : 'error';
          failures.push({ t, status, error: (e as Error).message });
        }
        samples.push({ t, ms: performance.now() - started, status });
        busy[i] = false;
      }
    };
    const drivers = Array.from({ length: opts.concurrency }, driver);
    await new Promise((r) => setTimeout(r, opts.durationMs));
    await faults;
    stop = true;
    await Promise.all(drivers);
    await Promise.all(retiring);
    for (const [, o] of open) windows.push({ label: `${o.label} (still open)`, from: o.from, to: Date.now() - t0 });

    // --- heal and check every session
    for (const [i, n] of nodes.entries()) {
      if (n.stopped) n.cont();
      if (!n.proc && listed.has(i)) await n.start();
    }
    for (const a of apps) if (!a.up) await a.start();
    await new Promise((r) => setTimeout(r, 1500)); // availability caches (1 s) see every node again
    let sessionsLost = 0;
    let updatesLost = 0;
    let phantom = 0;
    const lostDetail: string[] = [];
    let k = 0;
    await Promise.all(
      Array.from({ length: opts.concurrency }, async () => {
        while (k < opts.sessions) {
          const i = k++;
          const r = await call(apps[i % 2], 'GET', '/get', cookieFor(ids[i]));
          const n = r.status === 200 ? r.body?.n : undefined;
          if (typeof n !== 'number') {
            sessionsLost++;
            lostDetail.push(`session ${i} (${ids[i]}): gone (status ${r.status}), ${acked[i]} acknowledged`);
          } else if (n < acked[i]) {
            updatesLost += acked[i] - n;
            const h = history[i];
            const at = h.findIndex((e) => e.endsWith(` n=${n}`));
            lostDetail.push(
              `session ${i} (${ids[i]}): counter ${n} < ${acked[i]} acknowledged; around the loss: ${(process.env.CHAOS_VERBOSE ? h : h.slice(Math.max(0, at - 1), at + 3)).join(' | ')}`,
            );
          } else if (n > acked[i] + attempted[i]) {
            phantom += n - acked[i] - attempted[i];
            lostDetail.push(
              `session ${i} (${ids[i]}): counter ${n} > ${acked[i]} acknowledged + ${attempted[i]} failed attempts`,
            );
          }
        }
      }),
    );

    const appNodes = await Promise.all(
      apps.map(async (a) => {
        const st = await call(a, 'GET', '/stats');
        return Object.values(st.body.nodes as Record<string, { address: string }>)
          .map((n) => n.address)
          .sort();
      }),
    );

    // A request belongs to a fault when its lifetime overlaps the window (one in flight when an app is killed
    // started before the window opened).
    const inFault = (t: number, ms = 0) => windows.some((w) => t + ms >= w.from && t <= w.to + 2000);
    const failedSamples = samples.filter((s) => s.status !== 200);
    return {
      sessions: opts.sessions,
      requests: samples.length,
      acknowledged: samples.length - failedSamples.length,
      sessionsLost,
      updatesLost,
      phantomUpdates: phantom,
      requestsFailed: failedSamples.length,
      failuresOutsideFaults: failedSamples.filter((s) => !inFault(s.t, s.ms)).length,
      failures,
      latency: summary(samples),
      windows: windows
        .sort((a, b) => a.from - b.from)
        .map((w) => {
          const inside = samples.filter((s) => s.t >= w.from && s.t <= w.to);
          return {
            ...w,
            requests: inside.length,
            failed: inside.filter((s) => s.status !== 200).length,
            ...summary(inside),
          };
        }),
      lostDetail,
      listedNodes: [...listed].map((i) => nodes[i].address).sort(),
      appNodes,
    };
  } finally {
    agent.destroy();
    await Promise.all(apps.map((a) => a.kill()));
    await endpoint?.close();
    await killAll(nodes);
  }
}

export function printReport(r: ChaosReport, log: (l: string) => void = console.log): void {
  log('');
  log(`sessions: ${r.sessions}, requests: ${r.requests}, acknowledged: ${r.acknowledged}`);
  log(`sessions lost: ${r.sessionsLost}   updates lost: ${r.updatesLost}   phantom updates: ${r.phantomUpdates}`);
  log(`requests failed: ${r.requestsFailed} (outside fault windows + 2 s: ${r.failuresOutsideFaults})`);
  log(
    `nodes at the end: listed ${r.listedNodes.join(' ')}; ${r.appNodes.map((n, i) => `app ${i + 1} uses ${n.join(' ')}`).join('; ')}`,
  );
  log(`latency overall: p50 ${r.latency.p50} ms, p99 ${r.latency.p99} ms, max ${r.latency.max} ms`);
  for (const w of r.windows) {
    log(
      `  ${w.label.padEnd(32)} ${String(w.from).padStart(6)}-${String(w.to).padEnd(6)} ms: ${w.requests} req, ${w.failed} failed, p50 ${w.p50} p99 ${w.p99} max ${w.max} ms`,
    );
  }
  const byStatus = new Map<string, number[]>();
  for (const f of r.failures) {
    const k = `${f.status} ${f.error ?? ''}`.slice(0, 160);
    byStatus.set(k, [...(byStatus.get(k) ?? []), f.t]);
  }
  for (const [k, ts] of byStatus) log(`  failed x${ts.length} at ${ts[0]}..${ts[ts.length - 1]} ms: ${k}`);
  for (const l of r.lostDetail.slice(0, 20)) log(`  ${l}`);
}

if (require.main === module) {
  const seconds = Number(process.env.CHAOS_SECONDS ?? 60);
  const s = (x: number) => Math.round(x * seconds * 1000);
  // One fault at a time: each node is killed or stopped and brought back, app 2 is killed and restarted, a 4th node
  // joins and the 1st leaves (the apps discover both through a configuration endpoint).
  const schedule: FaultAction[] = [
    { at: s(0.05), kind: 'kill', node: 0 },
    { at: s(0.13), kind: 'restart', node: 0 },
    { at: s(0.2), kind: 'stop', node: 1 },
    { at: s(0.28), kind: 'cont', node: 1 },
    { at: s(0.31), kind: 'join', node: 3 },
    { at: s(0.35), kind: 'kill', node: 2 },
    { at: s(0.43), kind: 'restart', node: 2 },
    { at: s(0.5), kind: 'appKill', app: 1 },
    { at: s(0.55), kind: 'appRestart', app: 1 },
    { at: s(0.58), kind: 'stop', node: 0 },
    { at: s(0.65), kind: 'cont', node: 0 },
    // After a leave, the backups that lived on the node are re-placed by a background repair: the next fault waits.
    { at: s(0.68), kind: 'leave', node: 0 },
    { at: s(0.78), kind: 'kill', node: 1 },
    { at: s(0.85), kind: 'restart', node: 1 },
    { at: s(0.89), kind: 'stop', node: 2 },
    { at: s(0.95), kind: 'cont', node: 2 },
  ];
  // --zones: 6 nodes in 3 zones of 2 (n1 n2: a, n3 n4: b, n5 n6: c), a whole zone faulted at a time, once with a
  // zone stopped while another is killed (CHAOS_BACKUP_COUNT, default 1).
  const zoned = process.argv.includes('--zones');
  if (zoned) {
    const zone = (at: number, kind: 'kill' | 'restart' | 'stop' | 'cont', first: number): FaultAction[] => [
      { at: s(at), kind, node: first },
      { at: s(at), kind, node: first + 1 },
    ];
    schedule.length = 0;
    schedule.push(
      ...zone(0.05, 'kill', 0),
      ...zone(0.2, 'restart', 0),
      ...zone(0.32, 'stop', 2),
      ...zone(0.45, 'kill', 4),
      ...zone(0.58, 'cont', 2),
      ...zone(0.62, 'restart', 4),
      ...zone(0.75, 'kill', 2),
      ...zone(0.88, 'restart', 2),
    );
  }
  // CHAOS_SCHEDULE overrides, e.g. "kill:1@0.2,restart:1@0.5,appKill:2@0.6,appRestart:2@0.7,join:4@0.8,leave:2@0.9"
  // (fractions of the run).
  if (process.env.CHAOS_SCHEDULE) {
    schedule.length = 0;
    for (const item of process.env.CHAOS_SCHEDULE.split(',')) {
      const m = /^(\w+):(\d)@([\d.]+)$/.exec(item.trim());
      if (!m) throw new Error(`bad CHAOS_SCHEDULE item ${item}`);
      const kind = m[1] as FaultAction['kind'];
      const n = Number(m[2]) - 1;
      schedule.push(
        kind === 'appKill' || kind === 'appRestart'
          ? { at: s(Number(m[3])), kind, app: n }
          : ({ at: s(Number(m[3])), kind, node: n } as FaultAction),
      );
    }
  }
  runChaos({
    sessions: Number(process.env.CHAOS_SESSIONS ?? 1000),
    durationMs: seconds * 1000,
    concurrency: Number(process.env.CHAOS_CONCURRENCY ?? 16),
    schedule,
    discovery: process.env.CHAOS_DISCOVERY === '1',
    ...(zoned
      ? {
          nodes: 6,
          zones: { n1: 'a', n2: 'a', n3: 'b', n4: 'b', n5: 'c', n6: 'c' },
          backupCount: Number(process.env.CHAOS_BACKUP_COUNT ?? 1),
        }
      : {}),
  }).then(
    (r) => {
      printReport(r);
      process.exit(r.sessionsLost || r.updatesLost || r.phantomUpdates ? 1 : 0);
    },
    (e) => {
      console.error(e);
      process.exit(2);
    },
  );
}
