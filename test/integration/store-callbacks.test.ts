// Store callbacks behave like MemoryStore's: called exactly once, outside any promise chain, so an exception thrown
// by a callback is an 'uncaughtException' (never an 'unhandledRejection', never swallowed). Runs in a child process:
// the listeners and the throws must not touch jest's own process.
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const ROOT = path.join(__dirname, '..', '..');
const ports = process.env.MSM_TEST_PORTS!.split(',').map(Number);

const CHILD = `
const { MemcachedStore } = require(${JSON.stringify(path.join(ROOT, 'lib', 'express', 'store'))});
const options = JSON.parse(process.argv[2]);
const events = [];
const calls = {};
process.on('uncaughtException', (e) => events.push('uncaughtException: ' + e.message));
process.on('unhandledRejection', (e) => events.push('unhandledRejection: ' + (e && e.message)));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** A callback that records its call and then throws. */
const throwing = (name) => (err, value) => {
  calls[name] = (calls[name] || 0) + 1;
  events.push(name + (err ? ' error' : value ? ' value' : ' ok'));
  throw new Error('thrown by the ' + name + ' callback');
};
(async () => {
  const store = new MemcachedStore(options);
  await store.ready();
  const id = store.genid();
  const session = () => ({ cookie: { originalMaxAge: 60000 }, n: 1 });
  store.set(id, session(), throwing('set'));
  await sleep(200);
  store.get(id, throwing('get'));
  await sleep(200);
  store.touch(id, session(), throwing('touch'));
  await sleep(200);
  store.destroy(id, throwing('destroy'));
  await sleep(200);
  // An error answer: the callback gets the error once, and its own throw is still uncaught.
  store.set('', session(), throwing('set-invalid'));
  await sleep(200);
  await store.close();
  process.stdout.write(JSON.stringify({ events, calls }));
  process.exit(0);
})();
`;

function runChild(options: object): Promise<{ events: string[]; calls: Record<string, number> }> {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'msm-cb-')), 'child.js');
  fs.writeFileSync(file, CHILD);
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['-r', path.join(ROOT, 'scripts', 'register.js'), file, JSON.stringify(options)],
      { timeout: 30_000 },
      (err, so, se) => {
        fs.rmSync(path.dirname(file), { recursive: true, force: true });
        if (err) return reject(new Error(`${err.message}\n${so}\n${se}`));
        resolve(JSON.parse(so));
      },
    );
  });
}

const nodes = ports.map((p, i) => `n${i + 1}:127.0.0.1:${p}`).join(',');

describe.each([
  ['non-sticky', { memcachedNodes: nodes, storageKeyPrefix: 'static:callbacks' }],
  ['sticky', { memcachedNodes: nodes, storageKeyPrefix: 'static:callbacks', sticky: true, route: 'a' }],
])('%s store callbacks', (_mode, options) => {
  test('each callback runs once; its exception is an uncaughtException, not an unhandledRejection', async () => {
    const { events, calls } = await runChild(options);
    expect(calls).toEqual({ set: 1, get: 1, touch: 1, destroy: 1, 'set-invalid': 1 });
    expect(events).toEqual([
      'set ok',
      'uncaughtException: thrown by the set callback',
      'get value',
      'uncaughtException: thrown by the get callback',
      'touch ok',
      'uncaughtException: thrown by the touch callback',
      'destroy ok',
      'uncaughtException: thrown by the destroy callback',
      'set-invalid error',
      'uncaughtException: thrown by the set-invalid callback',
    ]);
  });
});
