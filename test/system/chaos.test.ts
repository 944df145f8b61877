// Short chaos run: 2 app instances (non-sticky, lockingMode all) over 3 memcached nodes; one node is
// killed -9 and restarted, another is SIGSTOPped and continued, while counters are incremented. Zero loss:
// every session present, every acknowledged increment kept, none applied twice. Latencies are not asserted.
// The long version with the full schedule and the latency report: `npm run chaos`.
import { runChaos } from '../../scripts/chaos';

/** Zero loss, with the run's report and log in the failure message. */
function expectNoLoss(r: Awaited<ReturnType<typeof runChaos>>, lines: string[]): void {
  const detail = `${JSON.stringify({ ...r, failures: r.failures.slice(0, 10) }, null, 1)}\n${lines.join('\n')}`;
  expect(r.requests).toBeGreaterThan(200);
  if (r.sessionsLost || r.updatesLost || r.phantomUpdates) throw new Error(`chaos lost data:\n${detail}`);
}

test('one kill -9 and one SIGSTOP: no session lost, no acknowledged update lost', async () => {
  const lines: string[] = [];
  const r = await runChaos({
    sessions: 120,
    durationMs: 6000,
    concurrency: 6,
    operationTimeout: 500,
    schedule: [
      { at: 1000, kind: 'kill', node: 0 },
      { at: 2500, kind: 'restart', node: 0 },
      { at: 3500, kind: 'stop', node: 1 },
      { at: 5000, kind: 'cont', node: 1 },
    ],
    log: (l) => lines.push(l),
  });
  expectNoLoss(r, lines);
  // Both faults happened while requests were running.
  expect(r.windows.map((w) => w.label)).toEqual(['kill -9 n1 .. restart', 'SIGSTOP n2 .. cont']);
}, 120_000);

test('a node joins and a node leaves (autoDiscovery), then a node is killed: no session lost, no acknowledged update lost', async () => {
  const lines: string[] = [];
  const r = await runChaos({
    sessions: 120,
    durationMs: 7000,
    concurrency: 6,
    operationTimeout: 500,
    schedule: [
      { at: 1000, kind: 'join', node: 3 },
      { at: 3000, kind: 'leave', node: 0 },
      { at: 5500, kind: 'kill', node: 1 },
    ],
    log: (l) => lines.push(l),
  });
  expectNoLoss(r, lines);
  expect(r.windows.map((w) => w.label)).toEqual(['join n4', 'leave n1', 'kill -9 n2 (still open)']);
  // Both apps followed the endpoint: n2, n3, n4 at the end.
  expect(r.listedNodes).toHaveLength(3);
  expect(r.appNodes).toEqual([r.listedNodes, r.listedNodes]);
}, 120_000);
