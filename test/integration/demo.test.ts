// The local demo end to end: `npm run demo` (demo-app/run-local.ts) on free ports, driven by the same logic as
// `npm run demo:check` (demo-app/check.ts): one session across instances, the static logo without session, the cart,
// kill memcached n1 and keep the session, kill app a and keep the session; then SIGTERM stops everything.
import * as fs from 'fs';
import * as net from 'net';
import { routeFromCookieHeader } from '../../demo-app/balancer';
import { runCheck, CheckResult } from '../../demo-app/check';
import { RunningDemo, isAlive, startDemo } from '../helpers/demo';

jest.setTimeout(240_000);

const nginxInstalled = ['/usr/sbin/nginx', '/usr/bin/nginx', '/usr/local/sbin/nginx'].some((p) => fs.existsSync(p));

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => { s.destroy(); resolve(true); });
    s.once('error', () => resolve(false));
  });
}

async function runAndStop(env: Record<string, string>): Promise<{ demo: RunningDemo; result: CheckResult }> {
  const demo = await startDemo(env);
  let result: CheckResult;
  try {
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
  for (const port of [state.balancer.port, ...Object.values(state.memcached).map((m) => m.port), ...Object.values(state.apps).map((a) => a.port)]) {
    expect(await canConnect(port)).toBe(false);
  }
  if (!result.ok) {
    const pages = result.pages.slice(-12).map((p) => `${p.instance} ${p.sessionId} views=${p.views} node=${p.node?.id}`).join('\n');
    throw new Error(`demo check failed:\n${result.steps.map((s) => `${s.ok ? 'ok  ' : 'FAIL'} ${s.name}: ${s.detail}`).join('\n')}\n` +
      `--- last pages ---\n${pages}\n--- demo output ---\n${demo.output()}`);
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
    const { demo, result } = await runAndStop({ DEMO_STICKY: '', DEMO_BALANCER: '' });
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
    expect(result.pages.slice(-4).every((p) => p.sessionKey === last.sessionKey && p.createdAt === last.createdAt)).toBe(true);
  });

  test('sticky behind the Node balancer: the route in the cookie picks the instance; b takes over a\'s session', async () => {
    const { demo, result } = await runAndStop({ DEMO_STICKY: '1', DEMO_BALANCER: 'node' });
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
    const { demo, result } = await runAndStop({ DEMO_STICKY: '1', DEMO_BALANCER: 'nginx' });
    expect(demo.state.balancer.kind).toBe('nginx');
    expectAllStepsPassed(result);
    expect(firstStep(result).instances.size).toBe(1);
  });
});

describe('balancer routing', () => {
  test('the route is read from the signed, URL-encoded express-session cookie', () => {
    expect(routeFromCookieHeader('connect.sid=s%3AABCDEF-n1.a.sIgN%2Fx%2By')).toBe('a');
    expect(routeFromCookieHeader('x=1; connect.sid=s%3AABCDEF-n2.b.sig; y=2')).toBe('b');
    expect(routeFromCookieHeader('connect.sid=s%3AABCDEF-n1.sig')).toBeUndefined();
    expect(routeFromCookieHeader('other.sid=s%3AABCDEF-n1.a.sig')).toBeUndefined();
    expect(routeFromCookieHeader(undefined)).toBeUndefined();
  });
});
