// The local demo end to end: `npm run demo` (demo-app/run-local.ts) on free ports, driven by the same logic as
// `npm run demo:check` (demo-app/check.ts): one session across instances, the static logo without session, the cart,
// kill memcached n1 and keep the session, kill app a and keep the session; then SIGTERM stops everything.
import { type ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as http from 'http';
import * as os from 'os';
import * as path from 'path';
import {
  NON_PAGE_PATH,
  type Upstream,
  nginxConfig,
  routeFromCookieHeader,
  startNodeBalancer,
} from '../../demo-app/balancer';
import { CookieJar, runCheck, type CheckResult } from '../../demo-app/check';
import { colorFor } from '../../demo-app/config';
import { type RunningDemo, isAlive, startDemo } from '../helpers/demo';
import { canConnect, freePort } from '../helpers/memcached';

jest.setTimeout(240_000);

const nginxBin = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx'].find((p) => fs.existsSync(p));
const nginxInstalled = !!nginxBin;
const BROWSER_ACCEPT = 'text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8';

/** A browser's reloads without the browser: the page, then its logo, `n` times, with a cookie jar. Instances in order. */
async function pageLoads(url: string, n: number): Promise<{ pages: string[]; html: string[] }> {
  const jar = new CookieJar();
  const get = async (p: string, accept: string) => {
    const headers: Record<string, string> = { accept };
    if (jar.header()) headers.cookie = jar.header();
    const res = await fetch(new URL(p, url), { headers, signal: AbortSignal.timeout(20_000) });
    jar.update(res);
    return { res, text: await res.text() };
  };
  const pages: string[] = [];
  const html: string[] = [];
  for (let i = 0; i < n; i++) {
    const page = await get('/', BROWSER_ACCEPT);
    expect(page.res.status).toBe(200);
    pages.push(page.res.headers.get('x-instance')!);
    html.push(page.text);
    expect((await get('/static/logo.png', 'image/avif,image/webp,image/*,*/*;q=0.8')).res.status).toBe(200);
  }
  return { pages, html };
}

function expectAlternating(instances: string[]): void {
  expect(new Set(instances)).toEqual(new Set(['a', 'b']));
  for (let i = 1; i < instances.length; i++)
    expect({ i, instance: instances[i] }).not.toEqual({ i, instance: instances[i - 1] });
}

async function runAndStop(
  env: Record<string, string>,
  probe?: (demo: RunningDemo) => Promise<void>,
): Promise<{ demo: RunningDemo; result: CheckResult }> {
  const demo = await startDemo(env);
  let result: CheckResult;
  try {
    await probe?.(demo);
    result = await runCheck({ url: demo.state.url, state: demo.state, log: () => undefined });
  } catch (e) {
    await demo.stop();
    throw new Error(`${(e as Error).message}\n--- demo output ---\n${demo.output()}`);
  }
  const code = await demo.stop();
  // Ctrl-C / SIGTERM stops everything: the orchestrator exits cleanly, its processes are gone, its ports closed.
  expect(code).toBe(0);
  expect(fs.existsSync(demo.stateFile)).toBe(false);
  const { state } = demo;
  const pids = [...Object.values(state.memcached), ...Object.values(state.apps)].map((x) => x.pid);
  if (state.balancer.kind === 'nginx') pids.push(state.balancer.pid);
  for (const pid of pids) expect(isAlive(pid)).toBe(false);
  for (const port of [
    state.balancer.port,
    ...Object.values(state.memcached).map((m) => m.port),
    ...Object.values(state.apps).map((a) => a.port),
  ]) {
    expect(await canConnect(port)).toBe(false);
  }
  if (!result.ok) {
    const pages = result.pages
      .slice(-12)
      .map((p) => `${p.instance} ${p.sessionId} views=${p.views} node=${p.node?.id}`)
      .join('\n');
    throw new Error(
      `demo check failed:\n${result.steps.map((s) => `${s.ok ? 'ok  ' : 'FAIL'} ${s.name}: ${s.detail}`).join('\n')}\n`
        + `--- last pages ---\n${pages}\n--- demo output ---\n${demo.output()}`,
    );
  }
  return { demo, result };
}

function expectAllStepsPassed(result: CheckResult): void {
  for (const s of result.steps) {
    expect({ step: s.name, ok: s.ok, skipped: !!s.skipped }).toEqual({ step: s.name, ok: true, skipped: false });
  }
  expect(result.steps).toHaveLength(6);
}

/** The pages of the first step: one session, the counter going up by one. */
function firstStep(result: CheckResult) {
  const pages = result.pages.slice(0, 5);
  return {
    instances: new Set(pages.map((p) => p.instance)),
    ids: new Set(pages.map((p) => p.sessionId)),
    created: new Set(pages.map((p) => p.createdAt)),
    views: pages.map((p) => p.views),
  };
}

describe('local demo (npm run demo + npm run demo:check)', () => {
  test(`non-sticky behind ${nginxInstalled ? 'nginx' : 'the Node balancer'}: round robin, one session, survives n1 and app a`, async () => {
    const { demo, result } = await runAndStop({ DEMO_STICKY: '', DEMO_BALANCER: '' }, async (d) => {
      expect(d.output()).toContain('round robin over a and b');
      // Reloads alternate a, b, a, b although every page also loads the logo through the balancer.
      const { pages, html } = await pageLoads(d.state.url, 6);
      expectAlternating(pages);
      const last = html[html.length - 1];
      expect(last).toContain('Reload: the instance changes');
      // "Served by" badges in their instances' colours.
      for (const i of ['a', 'b'])
        expect(last).toContain(`<span class="h" style="background:${colorFor(i)}">${i}</span>`);
      await expectMetricsByAccept(d.state.url);
    });
    expect(demo.state.balancer.kind).toBe(nginxInstalled ? 'nginx' : 'node');
    expect(demo.state.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/$/);
    expect(result.sticky).toBe(false);
    expectAllStepsPassed(result);
    const f = firstStep(result);
    expect([...f.instances].sort()).toEqual(['a', 'b']);
    expect(f.ids.size).toBe(1);
    expect(f.created.size).toBe(1);
    expect(f.views).toEqual([1, 2, 3, 4, 5]);
    // After n1 died the session names n2; after app a died only b answered.
    const last = result.pages[result.pages.length - 1];
    expect(last.node?.id).toBe('n2');
    expect(last.instance).toBe('b');
    expect(
      result.pages.slice(-4).every((p) => p.sessionKey === last.sessionKey && p.createdAt === last.createdAt),
    ).toBe(true);
  });

  test("sticky behind the Node balancer: the route in the cookie picks the instance; b takes over a's session", async () => {
    const { demo, result } = await runAndStop({ DEMO_STICKY: '1', DEMO_BALANCER: 'node' }, async (d) => {
      // The banner and the page describe sticky routing, not round robin.
      expect(d.output()).toContain('by the route in the session cookie');
      expect(d.output()).not.toContain('round robin over a and b');
      const { pages, html } = await pageLoads(d.state.url, 3);
      expect(new Set(pages).size).toBe(1);
      expect(html[2]).toContain(
        `Reload: instance ${pages[0]} answers every time (the balancer follows the route .${pages[0]} in the cookie)`,
      );
      expect(html[2]).not.toContain('the instance changes');
    });
    expect(demo.state.balancer.kind).toBe('node');
    expect(result.sticky).toBe(true);
    expectAllStepsPassed(result);
    const f = firstStep(result);
    expect(f.instances.size).toBe(1);
    expect(f.ids.size).toBe(1);
    expect(f.views).toEqual([1, 2, 3, 4, 5]);
    const first = result.pages[0];
    expect(first.sessionId.endsWith(`.${first.instance}`)).toBe(true);
    // The takeover: b serves a's session under route b.
    const last = result.pages[result.pages.length - 1];
    expect(last.instance).toBe('b');
    expect(last.sessionId.endsWith('.b')).toBe(true);
  });

  (nginxInstalled ? test : test.skip)('sticky behind nginx: the nginx map routes by the cookie', async () => {
    const { demo, result } = await runAndStop({ DEMO_STICKY: '1', DEMO_BALANCER: 'nginx' }, async (d) => {
      expect(d.output()).toContain('by the route in the session cookie');
      expect(new Set((await pageLoads(d.state.url, 3)).pages).size).toBe(1);
    });
    expect(demo.state.balancer.kind).toBe('nginx');
    expectAllStepsPassed(result);
    expect(firstStep(result).instances.size).toBe(1);
  });
});

// /metrics: an HTML table for a browser, JSON for scripts (and Accept: any), Prometheus text for scrapers.
async function expectMetricsByAccept(url: string): Promise<void> {
  const get = async (accept: string, query = '') => {
    const res = await fetch(new URL(`/metrics${query}`, url), {
      headers: { accept },
      signal: AbortSignal.timeout(20_000),
    });
    return { type: res.headers.get('content-type') ?? '', text: await res.text() };
  };
  const html = await get(BROWSER_ACCEPT);
  expect(html.type).toMatch(/^text\/html/);
  expect(html.text).toMatch(
    /<table><caption>Counters<\/caption>.*<tr><th>requestsWithSession<\/th><td>\d+<\/td><\/tr>/s,
  );
  expect(html.text).toMatch(/<caption>Nodes<\/caption>.*<th>n1<\/th>.*<th>n2<\/th>/s);
  for (const accept of ['application/json', '*/*']) {
    const json = await get(accept);
    expect(json.type).toMatch(/^application\/json/);
    expect(typeof JSON.parse(json.text).stats.requestsWithSession).toBe('number');
  }
  for (const accept of [
    'text/plain',
    'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1',
  ]) {
    const prom = await get(accept);
    expect(prom.type).toMatch(/^text\/plain/);
    expect(prom.text).toMatch(/^express_msm_\w+/m);
  }
  // ?format= overrides Accept.
  expect((await get(BROWSER_ACCEPT, '?format=json')).type).toMatch(/^application\/json/);
  expect((await get('application/json', '?format=html')).type).toMatch(/^text\/html/);
}

/** Two upstreams that answer with their route, a balancer in front (the Node one or nginx from nginxConfig()). */
async function withBalancer(kind: 'node' | 'nginx', run: (url: string) => Promise<void>): Promise<void> {
  const servers: http.Server[] = [];
  const upstreams: Upstream[] = [];
  for (const route of ['a', 'b']) {
    const port = await freePort();
    const srv = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-instance': route });
      res.end(`${route} ${req.url}`);
    });
    await new Promise<void>((r) => srv.listen(port, '127.0.0.1', () => r()));
    servers.push(srv);
    upstreams.push({ route, host: '127.0.0.1', port });
  }
  const port = await freePort();
  let close: () => Promise<void>;
  let dir: string | undefined;
  if (kind === 'node') {
    const b = await startNodeBalancer({ host: '127.0.0.1', port, upstreams });
    close = b.close;
  } else {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'express-msm-nginx-test-'));
    const conf = path.join(dir, 'nginx.conf');
    fs.writeFileSync(
      conf,
      nginxConfig({
        listen: `127.0.0.1:${port}`,
        upstreams,
        local: { dir, user: process.getuid?.() === 0 ? 'root' : undefined },
      }),
    );
    const proc: ChildProcess = spawn(
      nginxBin!,
      ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log'), '-g', 'daemon off;'],
      { stdio: 'ignore' },
    );
    const until = Date.now() + 15_000;
    while (!(await canConnect(port))) {
      if (proc.exitCode !== null || Date.now() > until)
        throw new Error(`nginx did not start: ${fs.readFileSync(path.join(dir, 'error.log'), 'utf8')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    close = async () => {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGQUIT');
      await exited;
    };
  }
  try {
    await run(`http://127.0.0.1:${port}`);
  } finally {
    await close();
    for (const s of servers)
      await new Promise((r) => {
        s.close(r);
        s.closeAllConnections();
      });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  }
}

describe('balancer routing', () => {
  const balancers: Array<'node' | 'nginx'> = nginxInstalled ? ['node', 'nginx'] : ['node'];

  test.each(balancers)(
    '%s: pages alternate a, b, a, b; static files and health checks take turns of their own',
    async (kind) => {
      await withBalancer(kind, async (url) => {
        const served = async (p: string, cookie?: string) =>
          await fetch(url + p, { headers: cookie ? { cookie } : {} }).then(async (r) => {
            await r.text();
            return r.headers.get('x-instance')!;
          });
        const pages: string[] = [];
        const others: string[] = [];
        // A health check before the first page (the demo's start-up probe) does not shift the pages' turn either.
        others.push(await served('/healthz'));
        for (let i = 0; i < 4; i++) {
          pages.push(await served(i % 2 ? '/?format=json' : '/'));
          others.push(await served('/static/logo.png'));
          if (i === 1) others.push(await served('/favicon.ico'));
          if (i === 2) pages.push(await served('/metrics'));
        }
        expectAlternating(pages);
        expectAlternating(others);
        expect(pages[0]).toBe('a');
        // Sticky: a route in the cookie pins pages; non-pages keep their own turn.
        const cookie = 'connect.sid=s%3AABCDEF-n1.b.sig';
        expect([await served('/', cookie), await served('/', cookie), await served('/cart/add', cookie)]).toEqual([
          'b',
          'b',
          'b',
        ]);
      });
    },
  );

  test('the non-page pattern covers what the app serves without a session, and nothing the pages use', () => {
    const re = new RegExp(NON_PAGE_PATH);
    for (const p of ['/static/logo.png', '/favicon.ico', '/x/app.js', '/healthz']) expect(re.test(p)).toBe(true);
    for (const p of ['/', '/metrics', '/cart/add', '/logout', '/healthz/x']) expect(re.test(p)).toBe(false);
  });

  test('the route is read from the signed, URL-encoded express-session cookie', () => {
    expect(routeFromCookieHeader('connect.sid=s%3AABCDEF-n1.a.sIgN%2Fx%2By')).toBe('a');
    expect(routeFromCookieHeader('x=1; connect.sid=s%3AABCDEF-n2.b.sig; y=2')).toBe('b');
    expect(routeFromCookieHeader('connect.sid=s%3AABCDEF-n1.sig')).toBeUndefined();
    expect(routeFromCookieHeader('other.sid=s%3AABCDEF-n1.a.sig')).toBeUndefined();
    expect(routeFromCookieHeader(undefined)).toBeUndefined();
  });
});
