// NodeClient frames requests and matches answers itself (memjs keeps the connection): concurrent operations get
// their own answers, quiet writes report success and failure, a restarted node costs no operation, a stopped node
// times out without confusing later answers, and add/delete carry CAS.
import { NodeClient, inBackground } from '../../lib/memcached/node-client';
import { type MemcachedProcess, startMemcacheds, killAll } from '../helpers/memcached';
import { RawClient } from '../helpers/raw-client';

const logger = { debug() {}, info() {}, warn() {}, error() {} };
let nodes: MemcachedProcess[];
const clients: NodeClient[] = [];

function client(node: MemcachedProcess, operationTimeout = 1000): NodeClient {
  const c = new NodeClient({ id: 'n1', host: '127.0.0.1', port: node.port, operationTimeout, logger });
  clients.push(c);
  return c;
}

beforeAll(async () => {
  nodes = await startMemcacheds(1, ['-I', '1m']);
});
afterAll(async () => {
  clients.forEach((c) => c.close());
  await killAll(nodes);
});

test('thousands of concurrent operations each get their own answer', async () => {
  const c = client(nodes[0]);
  const n = 2000;
  const values = Array.from({ length: n }, (_, i) => Buffer.from(`value ${i} `.repeat(1 + (i % 300))));
  const sets = await Promise.all(values.map((v, i) => c.set(`nc:k${i}`, v, 60)));
  expect(sets.every((r) => r.ok && r.value === true)).toBe(true);
  const [gets, misses] = await Promise.all([
    Promise.all(values.map((_, i) => c.get(`nc:k${i}`))),
    Promise.all(values.map((_, i) => c.get(`nc:missing${i}`))),
  ]);
  gets.forEach((g, i) => expect(g.ok && g.value!.equals(values[i])).toBe(true));
  expect(misses.every((r) => r.ok && r.value === null)).toBe(true);
  const deletes = await Promise.all(values.map((_, i) => c.delete(i % 2 ? `nc:k${i}` : `nc:missing${i}`)));
  deletes.forEach((d, i) => expect(d).toEqual({ ok: true, value: i % 2 === 1 }));
  const touches = await Promise.all(values.map((_, i) => c.touch(`nc:k${i}`, 60)));
  touches.forEach((t, i) => expect(t).toEqual({ ok: true, value: i % 2 === 0 }));
  expect(c.ops.errors).toBe(0);
});

test('a quiet set that memcached refuses reports the failure; the ones around it succeed', async () => {
  const c = client(nodes[0]);
  const [a, big, b] = await Promise.all([
    c.set('nc:a', Buffer.from('a'), 60),
    c.set('nc:big', Buffer.alloc(2 * 1024 * 1024), 60),
    c.set('nc:b', Buffer.from('b'), 60),
  ]);
  expect(a).toEqual({ ok: true, value: true });
  expect(b).toEqual({ ok: true, value: true });
  expect(big.ok).toBe(false);
  expect(!big.ok && big.error.message).toMatch(/too large/);
  expect(await c.get('nc:b')).toEqual({ ok: true, value: Buffer.from('b') });
});

test('background quiet sets leave unanswered: a later answer or one NOOP confirms them; refusals and a stopped node still fail them', async () => {
  const c = client(nodes[0], 300);
  const raw = new RawClient(nodes[0].port);
  try {
    await c.get('nc:connect'); // connected: operations queued while connecting leave differently (writeWaiting)
    // Alone on the connection: one NOOP confirms both (had the last set become an answered SET, no NOOP would go).
    const [one, two] = await Promise.all(
      inBackground(() => [c.set('nc:bg1', Buffer.from('one'), 60), c.set('nc:bg2', Buffer.from('two'), 60)]),
    );
    expect([one, two]).toEqual([
      { ok: true, value: true },
      { ok: true, value: true },
    ]);
    expect(c.ops.noop).toBe(1);
    expect((await raw.get('nc:bg2'))?.toString()).toBe('two');
    // An awaited set in the same turn makes the turn's last quiet command an answered one: no NOOP.
    const [bg, awaited] = await Promise.all([
      inBackground(() => c.set('nc:bg3', Buffer.from('3'), 60)),
      c.set('nc:aw', Buffer.from('a'), 60),
    ]);
    expect([bg.ok, awaited.ok, c.ops.noop]).toEqual([true, true, 1]);
    // Followed by a get in a later turn: the get's answer confirms it, before any NOOP is due.
    const later = inBackground(() => c.set('nc:bg4', Buffer.from('four'), 60));
    await new Promise((r) => setImmediate(r));
    expect(await c.get('nc:bg4')).toEqual({ ok: true, value: Buffer.from('four') });
    expect(await later).toEqual({ ok: true, value: true });
    expect(c.ops.noop).toBe(1);
    // Refused: memcached answers a quiet command's failure.
    const big = await inBackground(() => c.set('nc:bgbig', Buffer.alloc(2 * 1024 * 1024), 60));
    expect(!big.ok && big.error.message).toMatch(/too large/);
    // A stopped node answers nothing: the set fails (timed out), never taken as written.
    await nodes[0].stop();
    const lost = await inBackground(() => c.set('nc:bg5', Buffer.from('five'), 60));
    expect(!lost.ok && lost.error.message).toMatch(/timed out/);
  } finally {
    nodes[0].cont();
    raw.close();
  }
});

test('add returns the CAS; delete with another CAS leaves the item, with its own deletes it', async () => {
  const c = client(nodes[0]);
  await c.delete('nc:lock');
  const first = await c.addWithCas('nc:lock', Buffer.from('t1'), 60);
  expect(first.ok && Buffer.isBuffer(first.value) && first.value.length === 8).toBe(true);
  expect(await c.addWithCas('nc:lock', Buffer.from('t2'), 60)).toEqual({ ok: true, value: null });
  const cas = (first as { value: Buffer }).value;
  const other = Buffer.from(cas);
  other[7] ^= 1;
  expect(await c.delete('nc:lock', other)).toEqual({ ok: true, value: false });
  expect(await c.get('nc:lock')).toEqual({ ok: true, value: Buffer.from('t1') });
  expect(await c.delete('nc:lock', cas)).toEqual({ ok: true, value: true });
  expect(await c.get('nc:lock')).toEqual({ ok: true, value: null });
});

test('a restarted node costs no operation: the broken socket is retried once on a new one', async () => {
  const c = client(nodes[0]);
  expect((await c.set('nc:r', Buffer.from('x'), 60)).ok).toBe(true);
  await nodes[0].restart();
  const results = await Promise.all([c.get('nc:r'), c.set('nc:r', Buffer.from('y'), 60), c.get('nc:r')]);
  expect(results.map((r) => r.ok)).toEqual([true, true, true]);
  expect(results[0]).toEqual({ ok: true, value: null }); // the restart emptied the node
  expect(results[2]).toEqual({ ok: true, value: Buffer.from('y') }); // retried in order, on one new socket
  expect(c.ops.errors).toBe(0);
});

test('a stopped node times out; answers it sends after SIGCONT are not taken for later operations', async () => {
  const c = client(nodes[0], 300);
  const raw = new RawClient(nodes[0].port);
  try {
    await raw.set('nc:s1', 'one', 60);
    await raw.set('nc:s2', 'two', 60);
    await nodes[0].stop();
    const stalled = await c.get('nc:s1');
    expect(stalled.ok).toBe(false);
    expect(!stalled.ok && stalled.error.message).toMatch(/timed out/);
    expect(c.ops.timeouts).toBeGreaterThanOrEqual(1);
    nodes[0].cont();
    const r = await c.get('nc:s2');
    expect(r.ok && r.value!.toString()).toBe('two');
  } finally {
    nodes[0].cont();
    raw.close();
  }
});

test('a stopped node: an operation re-sent on a new socket after an earlier one timed out still fails at its own deadline', async () => {
  const timeout = 2000;
  const c = client(nodes[0], timeout);
  try {
    await nodes[0].stop();
    const first = c.get('nc:first', true);
    await new Promise((r) => setTimeout(r, timeout / 2));
    const t0 = Date.now();
    // Written on the stalled socket; when `first` times out that socket is replaced and this one is re-sent behind
    // newer operations, keeping its deadline.
    const second = c.get('nc:second');
    expect((await first).ok).toBe(false);
    c.get('nc:third', true); // a newer operation at the head of the queue, with a later deadline
    const r = await second;
    expect(r.ok).toBe(false);
    // Its own deadline is t0 + timeout; waiting for the newer operation's would take timeout / 2 longer.
    expect(Date.now() - t0).toBeLessThan(timeout * 1.3);
  } finally {
    nodes[0].cont();
  }
});

test('an answer that arrived while this process was stalled past the deadline counts as answered', async () => {
  const c = client(nodes[0], 200);
  expect((await c.set('nc:lag', Buffer.from('v'), 60)).ok).toBe(true);
  const pending = c.get('nc:lag');
  await new Promise((r) => setImmediate(r)); // the request has left (writes go out once per event-loop turn)
  const stalledUntil = Date.now() + 500;
  while (Date.now() < stalledUntil) {
    /* a long synchronous stretch: the answer waits on the socket */
  }
  const r = await pending;
  expect(r.ok && r.value!.toString()).toBe('v');
  expect(c.ops.timeouts).toBe(0);
});

test('a closed client fails at once', async () => {
  const c = client(nodes[0]);
  c.close();
  const r = await c.get('nc:any');
  expect(!r.ok && r.error.message).toMatch(/client is closed/); // refused, not left to time out
});

test('getPair reads two keys in one request: hits, misses, empty values, and a quiet get left last', async () => {
  const c = client(nodes[0]);
  const raw = new RawClient(nodes[0].port);
  try {
    await raw.set('nc:pa', 'alpha', 60);
    await raw.set('nc:pb', 'beta', 60);
    await raw.set('nc:pe', '', 60);
    const statsBefore = await raw.stats();
    const [both, firstMissing, secondMissing, none, empty] = await Promise.all([
      c.getPair('nc:pa', 'nc:pb'),
      c.getPair('nc:px', 'nc:pb'),
      c.getPair('nc:pa', 'nc:py'),
      c.getPair('nc:px', 'nc:py'),
      c.getPair('nc:pe', 'nc:pe'),
    ]);
    expect(both).toEqual([
      { ok: true, value: Buffer.from('alpha') },
      { ok: true, value: Buffer.from('beta') },
    ]);
    expect(firstMissing).toEqual([
      { ok: true, value: null },
      { ok: true, value: Buffer.from('beta') },
    ]);
    expect(secondMissing).toEqual([
      { ok: true, value: Buffer.from('alpha') },
      { ok: true, value: null },
    ]);
    expect(none).toEqual([
      { ok: true, value: null },
      { ok: true, value: null },
    ]);
    // An empty value is a hit, not a miss.
    expect(empty).toEqual([
      { ok: true, value: Buffer.alloc(0) },
      { ok: true, value: Buffer.alloc(0) },
    ]);
    // Each key is one get on the server (a multi-get), answers matched in order with the plain gets around them.
    const statsAfter = await raw.stats();
    expect(Number(statsAfter.cmd_get) - Number(statsBefore.cmd_get)).toBe(10);
    const [g1, [p1, p2], g2] = await Promise.all([c.get('nc:pb'), c.getPair('nc:px', 'nc:pa'), c.get('nc:py')]);
    expect([g1, p1, p2, g2]).toEqual([
      { ok: true, value: Buffer.from('beta') },
      { ok: true, value: null },
      { ok: true, value: Buffer.from('alpha') },
      { ok: true, value: null },
    ]);
    // The second key refused (invalid): the quiet get is the last request of the turn and is sent answered.
    const [q, invalid] = await c.getPair('nc:px', 'bad key');
    expect(q).toEqual({ ok: true, value: null });
    expect(invalid.ok).toBe(false);
    const [q2] = await c.getPair('nc:pa', 'bad key');
    expect(q2).toEqual({ ok: true, value: Buffer.from('alpha') });
    expect(c.ops.errors).toBe(0);
  } finally {
    raw.close();
  }
});
