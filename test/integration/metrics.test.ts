// Prometheus exporter (issue 8): values come from store.stats() at scrape time; per-node availability gauge.
import { Registry } from 'prom-client';
import { MemcachedStore } from '../../lib/express/store';
import { registerMetrics } from '../../lib/express/metrics';
import { registerMetrics as exported } from '../../lib';

const ports = process.env.MSM_TEST_PORTS!.split(',').map(Number);

function value(text: string, line: RegExp): number {
  const m = text.split('\n').find((l) => line.test(l));
  if (!m) throw new Error(`no metric line ${line} in:\n${text}`);
  return Number(m.slice(m.lastIndexOf(' ') + 1));
}

describe('registerMetrics', () => {
  let store: MemcachedStore;
  beforeAll(async () => {
    // n3 is a closed port: it must show as unavailable.
    store = new MemcachedStore({
      memcachedNodes: `n1:127.0.0.1:${ports[0]},n2:127.0.0.1:${ports[1]},n3:127.0.0.1:1`,
      storageKeyPrefix: 'static:metrics',
      operationTimeout: 500,
    });
    await store.ready();
  });
  afterAll(() => store.close());

  test('is exported from the package entry point', () => {
    expect(exported).toBe(registerMetrics);
  });

  test('counters, pending backups, timings and node availability are read at scrape time', async () => {
    const register = new Registry();
    const reg = registerMetrics(store, register);
    let text = await register.metrics();
    expect(value(text, /^express_msm_node_available\{node="n1",/)).toBe(1);
    expect(value(text, /^express_msm_node_available\{node="n2",/)).toBe(1);
    expect(value(text, /^express_msm_node_available\{node="n3",/)).toBe(0);
    const created0 = value(text, /^express_msm_sessions_created_total /);

    const id = store.genid();
    await store.set(id, { cookie: { originalMaxAge: 60_000 }, n: 1 } as any);
    await store.get(id);
    await store.get(''); // no id: nothing can be looked up
    await store.backups.flush();

    text = await register.metrics();
    expect(value(text, /^express_msm_sessions_created_total /)).toBe(created0 + 1);
    expect(value(text, /^express_msm_invalid_session_ids_total /)).toBeGreaterThanOrEqual(1);
    expect(value(text, /^express_msm_requests_with_session_total /)).toBeGreaterThanOrEqual(1);
    expect(value(text, /^express_msm_pending_backups /)).toBe(0);
    expect(value(text, /^express_msm_operations_total\{operation="save"\}/)).toBeGreaterThanOrEqual(1);
    expect(value(text, /^express_msm_operation_duration_ms\{operation="load",stat="max"\}/)).toBeGreaterThan(0);
    const node = id.slice(id.lastIndexOf('-') + 1);
    expect(
      value(text, new RegExp(`^express_msm_node_operations_total\\{node="${node}",op="set"\\}`)),
    ).toBeGreaterThanOrEqual(2);
    expect(text).toMatch(/# TYPE express_msm_sessions_created_total counter/);
    expect(text).toMatch(/# TYPE express_msm_node_available gauge/);

    // Every numeric counter of stats() is exported.
    for (const [k, v] of Object.entries(store.stats())) {
      if (typeof v !== 'number' || k === 'pendingBackups') continue;
      const name =
        'express_msm_'
        + k
          .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
          .toLowerCase()
          .replace(/_total$/, '')
        + '_total';
      expect(value(text, new RegExp(`^${name} `))).toBe(v);
    }

    reg.unregister();
    expect(await register.metrics()).not.toMatch(/express_msm_/);
  });

  test('a prefix lets two stores share one registry', async () => {
    const register = new Registry();
    const a = registerMetrics(store, register);
    const b = registerMetrics(store, register, { prefix: 'other_' });
    const text = await register.metrics();
    expect(text).toMatch(/^other_node_available\{node="n1"/m);
    expect(text).toMatch(/^express_msm_node_available\{node="n1"/m);
    a.unregister();
    b.unregister();
  });

  test('a clear error when prom-client is not installed', () => {
    jest.isolateModules(() => {
      jest.doMock('prom-client', () => {
        throw new Error("Cannot find module 'prom-client'");
      });
      const { registerMetrics: fresh } = require('../../lib/express/metrics');
      expect(() => fresh(store)).toThrow(/optional peer dependency prom-client \(npm install prom-client\)/);
      jest.dontMock('prom-client');
    });
  });
});
