// Issue 11, item 8: no leaks. A store that is closed leaves no socket and no timer behind: its process exits by
// itself (each case runs in its own node process), and operations after close() fail with a clear error.
import { spawn } from 'child_process';
import * as path from 'path';
import { MemcachedStore } from '../../lib';
import { type MemcachedProcess, killAll, nodesString, startMemcacheds } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';

const root = path.resolve(__dirname, '../..');
const ports = process.env.MSM_TEST_PORTS!.split(',').map(Number);
const shared = ports.map((p, i) => `n${i + 1}:127.0.0.1:${p}`).join(',');
/** Generous: the child transpiles the library on start. A leaked socket would hold it forever. */
const EXIT_BOUND_MS = 20_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs test/fixtures/close-child.ts; the child must exit by itself within EXIT_BOUND_MS, else it is killed. */
function runChild(scenario: string, nodes: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['-r', path.join(root, 'scripts/register.js'), path.join(root, 'test/fixtures/close-child.ts'), scenario],
      { cwd: root, env: { ...process.env, MSM_NODES: nodes }, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(
        new Error(
          `${scenario}: still running ${EXIT_BOUND_MS} ms after start (stdout: ${stdout.trim()}; stderr: ${stderr.trim()})`,
        ),
      );
    }, EXIT_BOUND_MS);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function expectCleanExit(r: Run): void {
  expect(r.stderr).toBe('');
  // LEAK: something still held the event loop after close() (printed with what it was).
  expect(r.stdout.trim()).toBe('closed');
  expect(r.code).toBe(0);
}

describe('close() leaves nothing running: the process exits by itself', () => {
  it.each([
    ['store', 'new MemcachedStore(), genid(), close() at once'],
    ['sticky', 'the same in sticky mode'],
    ['middleware', 'memcachedSession(), store.genid(), close() at once'],
    ['traffic', 'memcachedSession() with locking after HTTP requests and store API calls'],
    ['sticky-traffic', 'sticky memcachedSession() after HTTP requests and store API calls'],
  ])('%s: %s', async (scenario) => {
    expectCleanExit(await runChild(scenario, shared));
  });

  describe('with a node killed and a node hung (SIGSTOP)', () => {
    let ps: MemcachedProcess[];
    beforeAll(async () => {
      ps = await startMemcacheds(3);
    });
    afterAll(async () => {
      ps[1].cont();
      await killAll(ps);
    });

    it('store: the probe to the hung node is in flight at close(), the killed node refuses: still exits', async () => {
      // n1's probe marker is there: no 'restarted' repair, whose key walk on hung n2 would hold close() for 10 s.
      const n1 = new RawClient(ps[0].port);
      await n1.set('ping-n1', 'msm');
      n1.close();
      await ps[1].stop();
      await ps[2].kill();
      // The child closes only after it saw n2's probe written and unanswered and n3 refused, and checks that close()
      // is what ended the probe (test/fixtures/close-child.ts, scenario store-hung).
      const r = await runChild('store-hung', nodesString(ps));
      const [first, ...rest] = r.stdout.trim().split('\n');
      expectCleanExit({ ...r, stdout: rest.join('\n') });
      expect(first).toBe('n2 probe in flight, n3 refused');
    });
  });
});

describe('after close()', () => {
  it('operations fail at once with a clear error (promises and callbacks); close() again is fine', async () => {
    const store = new MemcachedStore({ memcachedNodes: shared });
    const id = store.genid();
    await store.set(id, { cookie: { originalMaxAge: 60_000 } } as any);
    await store.close();
    const closed = /express-msm: the store is closed \(store\.close\(\) was called\)/;
    expect(() => store.genid()).toThrow(closed);
    await expect(store.get(id)).rejects.toThrow(closed);
    await expect(store.set(id, { cookie: { originalMaxAge: 60_000 } } as any)).rejects.toThrow(closed);
    await expect(store.touch(id, { cookie: { originalMaxAge: 60_000 } } as any)).rejects.toThrow(closed);
    await expect(store.destroy(id)).rejects.toThrow(closed);
    await expect(store.all()).rejects.toThrow(closed);
    await expect(store.length()).rejects.toThrow(closed);
    await expect(store.ids()).rejects.toThrow(closed);
    await expect(store.clear()).rejects.toThrow(closed);
    await expect(store.idsOf('u1')).rejects.toThrow(closed);
    const viaCallback = await new Promise<unknown>((resolve) => store.get(id, (err) => resolve(err)));
    expect(String(viaCallback)).toMatch(closed);
    await expect(store.close()).resolves.toBeUndefined();
  });
});
