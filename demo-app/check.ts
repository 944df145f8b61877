// `npm run demo:check`: drives a running demo through its balancer, the way the seeds test their setups.
//  1. one session across instances: the same session id and creation time whichever instance answers, the counter
//     goes up by one per request (non-sticky: both instances answer; sticky: the route's instance answers);
//  2. the static logo is served without touching the session (requestUriIgnorePattern: no Set-Cookie); /metrics;
//  3. the cart (a locked route in non-sticky mode) keeps its items;
//  4. kill memcached n1 while it holds the session: the session lives on (moved to n2 with its backup);
//  5. kill app a: b answers with the same session.
// Kills need the local demo's state file (pids, written by run-local.ts), or commands in DEMO_KILL_N1_CMD /
// DEMO_KILL_APP_A_CMD (docker compose: `docker compose kill n1`, `docker compose kill app_a`); else they are skipped.
//
//   DEMO_URL (default: the state file's url, else http://127.0.0.1:8080/)   DEMO_STATE_FILE (demo-app/.run/state.json)
import { execSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { PageInfo } from './app';
import type { DemoState } from './run-local';
import { canConnect } from '../test/helpers/memcached';

export const DEFAULT_STATE_FILE = path.resolve(__dirname, '.run', 'state.json');

export class CookieJar {
  private cookies = new Map<string, string>();

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  update(res: Response): void {
    for (const sc of res.headers.getSetCookie()) {
      const [pair, ...attrs] = sc.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const expired = attrs.some((a) => {
        const [k, v] = a.split('=');
        return k.trim().toLowerCase() === 'expires' && new Date(v).getTime() <= Date.now();
      });
      if (expired || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
  }

  get(name: string): string | undefined {
    return this.cookies.get(name);
  }
}

export class DemoClient {
  readonly jar = new CookieJar();
  constructor(readonly baseUrl: string) {}

  async request(method: string, p: string, expectJson = true): Promise<{ status: number; res: Response; body: any }> {
    const url = new URL(p, this.baseUrl).toString();
    const headers: Record<string, string> = { accept: expectJson ? 'application/json' : '*/*' };
    const cookie = this.jar.header();
    if (cookie) headers.cookie = cookie;
    const res = await fetch(url, { method, headers, redirect: 'manual', signal: AbortSignal.timeout(20_000) });
    this.jar.update(res);
    const text = await res.text();
    let body: any = text;
    if (expectJson && (res.headers.get('content-type') ?? '').includes('json')) body = JSON.parse(text);
    return { status: res.status, res, body };
  }

  /** GET / as JSON: one visit. Throws on anything but 200. */
  async visit(): Promise<PageInfo> {
    const r = await this.request('GET', '/?format=json');
    if (r.status !== 200)
      throw new Error(
        `GET / answered ${r.status}: ${String(typeof r.body === 'string' ? r.body : JSON.stringify(r.body)).slice(0, 300)}`,
      );
    return r.body as PageInfo;
  }
}

export interface CheckStep {
  name: string;
  ok: boolean;
  skipped?: boolean;
  detail: string;
}

export interface CheckOptions {
  url: string;
  state?: DemoState;
  /** Overrides for the kills (tests, docker compose). */
  killN1?: () => Promise<void>;
  killAppA?: () => Promise<void>;
  log?: (line: string) => void;
}

export interface CheckResult {
  ok: boolean;
  steps: CheckStep[];
  sticky: boolean;
  /** Every page seen, in order. */
  pages: PageInfo[];
}

/** kill -9 a pid from the state file, then wait until its port refuses connections. */
async function killPid(what: string, pid: number, port: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ESRCH') throw e;
  }
  const until = Date.now() + 20_000;
  while (Date.now() < until) {
    if (!(await canConnect(port, '127.0.0.1', 1000))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} (pid ${pid}) still accepts connections on ${port} after kill -9`);
}

function shellKill(cmd: string): () => Promise<void> {
  return async () => {
    execSync(cmd, { stdio: 'inherit' });
  };
}

export async function runCheck(o: CheckOptions): Promise<CheckResult> {
  const log = o.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const steps: CheckStep[] = [];
  const pages: PageInfo[] = [];
  const step = (name: string, ok: boolean, detail: string, skipped = false) => {
    steps.push({ name, ok, detail, skipped });
    log(`${skipped ? 'SKIP' : ok ? 'ok  ' : 'FAIL'} ${name}: ${detail}`);
  };
  const client = new DemoClient(o.url);
  const visit = async () => {
    const p = await client.visit();
    pages.push(p);
    return p;
  };

  const first = await visit();
  const sticky = first.sticky;
  const killN1 =
    o.killN1
    ?? (process.env.DEMO_KILL_N1_CMD
      ? shellKill(process.env.DEMO_KILL_N1_CMD)
      : o.state
        ? () => killPid('memcached n1', o.state!.memcached.n1.pid, o.state!.memcached.n1.port)
        : undefined);
  const killAppA =
    o.killAppA
    ?? (process.env.DEMO_KILL_APP_A_CMD
      ? shellKill(process.env.DEMO_KILL_APP_A_CMD)
      : o.state
        ? () => killPid('app a', o.state!.apps.a.pid, o.state!.apps.a.port)
        : undefined);

  // Requests after `from` keep the session: same key and creation time, counter +1 each (the first one may repeat
  // the previous value when the last change's asynchronous backup had not landed before a kill).
  const sameSession = (from: PageInfo, seq: PageInfo[], allowOneLost: boolean): string | null => {
    let prev = from;
    for (const [i, p] of seq.entries()) {
      if (p.sessionKey !== from.sessionKey)
        return `request ${i + 1} has session ${p.sessionId}, expected ${from.sessionKey}*`;
      if (p.createdAt !== from.createdAt)
        return `request ${i + 1}: creation time ${p.createdAt}, expected ${from.createdAt}`;
      const okViews = p.views === prev.views + 1 || (allowOneLost && i === 0 && p.views === prev.views);
      if (!okViews) return `request ${i + 1}: counter ${p.views} after ${prev.views}`;
      prev = p;
    }
    return null;
  };

  // msm writes backups after the response (sessionBackupAsync). Before a kill, wait until the instance that served the
  // last request reports no queued backups (/metrics goes to it: in sticky mode the cookie routes it; in non-sticky
  // mode poll until every instance seen says 0), so the kill tests failover rather than a write in flight.
  const settleBackups = async (last: PageInfo): Promise<void> => {
    const pending = new Map<string, number>();
    for (let i = 0; i < 100; i++) {
      const r = await client.request('GET', '/metrics');
      if (r.status === 200 && typeof r.body?.stats?.pendingBackups === 'number')
        pending.set(r.body.instance, r.body.stats.pendingBackups);
      const settled = pending.get(last.instance) === 0 && (sticky || [...pending.values()].every((n) => n === 0));
      if (settled && (sticky || pending.size >= 2 || i >= 3)) return;
      await new Promise((res) => setTimeout(res, 50));
    }
  };

  /** A fresh visit, queued backups settled, the fault, then four visits: what the user sees across the fault. */
  const across = async (
    fault: () => Promise<void>,
    what: string,
  ): Promise<{ before: PageInfo; seq: PageInfo[]; error: string }> => {
    const before = await visit();
    await settleBackups(before);
    await fault();
    log(`     ${what} (session ${before.sessionId}, counter ${before.views})`);
    const seq: PageInfo[] = [];
    let error = '';
    try {
      for (let i = 0; i < 4; i++) seq.push(await visit());
    } catch (e) {
      error = (e as Error).message;
    }
    return { before, seq, error };
  };

  // 1. One session across instances.
  let s = first;
  {
    const seq: PageInfo[] = [];
    const seen = new Set([first.instance]);
    for (let i = 0; i < 12 && (seq.length < 4 || (!sticky && seen.size < 2)); i++) {
      const p = await visit();
      seq.push(p);
      seen.add(p.instance);
    }
    const broken =
      sameSession(first, seq, false)
      ?? (seq.some((p) => p.sessionId !== first.sessionId) ? 'the session id changed' : null);
    const instances = [first, ...seq].map((p) => p.instance).join(' ');
    if (sticky) {
      step(
        'sticky: one instance serves the session',
        !broken && seen.size === 1 && first.sessionId.endsWith(`.${first.route}`),
        broken ?? `instances ${instances}; id ${first.sessionId} carries route .${first.route}`,
      );
    } else {
      step(
        'one session across instances',
        !broken && seen.size >= 2,
        broken
          ?? (seen.size >= 2
            ? `instances ${instances}; id ${first.sessionId}; counter ${first.views}..${seq[seq.length - 1].views}`
            : `only instance ${[...seen].join()} answered (is the balancer round robin?)`),
      );
    }
    s = seq[seq.length - 1] ?? first;
  }

  // 2. Static file: no session work, no cookie.
  {
    const r = await client.request('GET', '/static/logo.png', false);
    const type = r.res.headers.get('content-type') ?? '';
    const cookies = r.res.headers.getSetCookie();
    step(
      'static logo ignored by the session (requestUriIgnorePattern)',
      r.status === 200 && type.startsWith('image/png') && cookies.length === 0,
      `status ${r.status}, ${type}, ${cookies.length} Set-Cookie`,
    );
  }

  // Metrics: store.stats() as JSON, and Prometheus text.
  {
    const j = await client.request('GET', '/metrics');
    const t = await client.request('GET', '/metrics?format=prometheus', false);
    const counters = j.status === 200 && typeof j.body?.stats?.requestsWithSession === 'number';
    const prom = t.status === 200 && /^express_msm_\w+/m.test(String(t.body));
    step(
      'metrics (store.stats() as JSON and Prometheus text)',
      counters && prom,
      `JSON ${j.status}${counters ? ` (instance ${j.body.instance}, requestsWithSession ${j.body.stats.requestsWithSession})` : ''}, Prometheus ${t.status}${prom ? '' : ' without express_msm_ metrics'}`,
    );
  }

  // 3. Cart (locked in non-sticky mode).
  {
    const before = s.cart.length;
    let ok = true;
    let detail = '';
    for (let i = 0; i < 2; i++) {
      const r = await client.request('POST', '/cart/add?format=json');
      if (r.status !== 200 || r.body.cart?.length !== before + i + 1) {
        ok = false;
        detail = `POST /cart/add answered ${r.status} ${JSON.stringify(r.body).slice(0, 200)}`;
        break;
      }
    }
    const p = await visit();
    if (ok && p.cart.length !== before + 2) {
      ok = false;
      detail = `cart has ${p.cart.length} items, expected ${before + 2}`;
    }
    const broken = ok ? sameSession(s, [p], false) : null;
    step(
      `cart keeps its items${sticky ? '' : ' (locked: lockingMode uriPattern:/cart.*)'}`,
      ok && !broken,
      broken ?? (detail || `cart: ${p.cart.join(', ')}`),
    );
    s = p;
  }

  // 4. Kill memcached n1 while it holds the session.
  let killedN1 = false;
  if (!killN1) {
    step('kill memcached n1: the session lives on', true, 'skipped: no state file and no DEMO_KILL_N1_CMD', true);
  } else {
    // A session on n1 (non-sticky: its primary; sticky: its memcached copy): log out and start again until the
    // random node choice gives one.
    let tries = 0;
    while (s.node?.id !== 'n1' && tries < 30) {
      tries++;
      await client.request('POST', '/logout?format=json');
      s = await visit();
    }
    if (s.node?.id !== 'n1') {
      step(
        'kill memcached n1: the session lives on',
        false,
        `no session landed on n1 in ${tries} new sessions (node ${s.node?.id})`,
      );
    } else {
      const { before, seq, error } = await across(async () => {
        await killN1();
        killedN1 = true;
      }, 'killed memcached n1');
      const last = seq[seq.length - 1];
      const broken =
        error
        || sameSession(before, seq, true)
        || (!sticky && last.node?.id !== 'n2' ? `session still names node ${last.node?.id}` : null);
      step(
        'kill memcached n1: the session lives on',
        !broken,
        broken
          || `id ${before.sessionId} -> ${last.sessionId} (node ${last.node?.id}), instances ${seq.map((p) => p.instance).join(' ')}, `
            + `counter ${before.views} -> ${seq.map((p) => p.views).join(', ')}, created ${last.createdAt}`,
      );
      if (last) s = last;
    }
  }

  // 5. Kill app a.
  if (!killAppA) {
    step('kill app a: b keeps the session', true, 'skipped: no state file and no DEMO_KILL_APP_A_CMD', true);
  } else {
    // In sticky mode, make the session belong to a (route a) first: new sessions until a creates one.
    let tries = 0;
    while (sticky && s.instance !== 'a' && tries < 20) {
      tries++;
      await client.request('POST', '/logout?format=json');
      s = await visit();
    }
    // The session's memcached copy must be on a live node before a dies: after n1 was killed, an instance that has
    // not noticed yet may still create sessions on n1 (msm moves them at their next request), so visit until the
    // page names a live node.
    for (let i = 0; i < 20 && (!s.node || (killedN1 && s.node.id === 'n1')); i++) {
      await new Promise((r) => setTimeout(r, 100));
      s = await visit();
    }
    if (!s.node || (killedN1 && s.node.id === 'n1')) {
      step(
        'kill app a: b keeps the session',
        false,
        `the session still names ${s.node?.id ?? 'no node'} (dead) after 20 requests`,
      );
      return { ok: false, steps, sticky, pages };
    }
    const { before, seq, error } = await across(killAppA, 'killed app a');
    const broken =
      error
      || sameSession(before, seq, sticky)
      || (seq.some((p) => p.instance !== 'b') ? `instances ${seq.map((p) => p.instance).join(' ')} (a is dead)` : null);
    const last = seq[seq.length - 1];
    step(
      'kill app a: b keeps the session',
      !broken,
      broken
        || `id ${before.sessionId} -> ${last.sessionId}, instances ${seq.map((p) => p.instance).join(' ')}, `
          + `counter ${before.views} -> ${seq.map((p) => p.views).join(', ')}, created ${last.createdAt}`,
    );
  }

  const ok = steps.every((x) => x.ok);
  return { ok, steps, sticky, pages };
}

function readState(file: string): DemoState | undefined {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as DemoState;
  } catch {
    return undefined;
  }
}

async function main(): Promise<void> {
  const stateFile = path.resolve(process.env.DEMO_STATE_FILE || DEFAULT_STATE_FILE);
  let state = readState(stateFile);
  if (state) {
    try {
      process.kill(state.orchestratorPid, 0);
    } catch {
      state = undefined; // a stale file from a demo that is gone
    }
  }
  const url = process.env.DEMO_URL || state?.url || 'http://127.0.0.1:8080/';
  console.log(
    `demo:check against ${url}${state ? ` (local demo, state ${path.relative(process.cwd(), stateFile)})` : ''}`,
  );
  let result: CheckResult;
  try {
    result = await runCheck({ url, state });
  } catch (e) {
    console.error(`demo:check failed: ${(e as Error).message}\nIs the demo running? Start it with: npm run demo`);
    process.exit(1);
  }
  const failed = result.steps.filter((x) => !x.ok);
  console.log(failed.length ? `\n${failed.length} check(s) failed` : '\nall checks passed');
  if (state && result.steps.some((x) => !x.skipped && /kill/.test(x.name))) {
    console.log('n1 and app a are dead now: restart the demo (Ctrl-C, npm run demo) to start over.');
  }
  process.exit(failed.length ? 1 : 0);
}

if (require.main === module) {
  void main();
}
