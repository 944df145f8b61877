// Inclusive time per call of a store's methods inside a bench server, under the bench's load: what a CPU profile
// cannot give (its samples are too coarse for 1-10 µs calls). A preload for the servers:
//   BENCH_NODE_ARGS="-r ./bench/instrument.js" npm run bench -- --only memory,msm-sticky --routes write
// Each server prints `INST <config> <method>: <µs> µs x <calls>` when it exits. Calls in its first 5 s (logins,
// warm-up) are not counted. The wrapping costs: about 0.25 µs per call in a tight loop, 1.5-2 µs per call under the
// bench's load (express-msm's sticky write server spent 70 µs more per request than MemoryStore's with it, 37 without),
// and a method's figure includes the wrapping of the methods it calls. The figures rank steps; they do not add up.
// A Store method that calls its callback synchronously includes what the callback does: express-msm answers
// express-session's save on the spot, so its `set` includes writing the response (`saveNow` does not).
'use strict';
const path = require('path');
const { performance } = require('perf_hooks');

const started = Date.now();
const SKIP_MS = 5000;
const totals = new Map();

function wrap(proto, method, label = method) {
  const f = proto?.[method];
  // A renamed method would otherwise just vanish from the report.
  if (typeof f !== 'function') return void process.stderr.write(`INST ${label}: no such method; not timed\n`);
  proto[method] = function (...args) {
    const t = performance.now();
    try {
      return f.apply(this, args);
    } finally {
      if (Date.now() - started > SKIP_MS) {
        const e = totals.get(label) || (totals.set(label, { calls: 0, ms: 0 }), totals.get(label));
        e.calls++;
        e.ms += performance.now() - t;
      }
    }
  };
}

const config = process.env.BENCH_CONFIG || '';
const lib = process.env.BENCH_LIB;
const fromRoot = (id) => require(require.resolve(id, { paths: [path.join(__dirname, '..')] }));

if (config === 'memory' || config.startsWith('floor-')) {
  const { MemoryStore, Store } = fromRoot('express-session');
  for (const m of ['get', 'set', 'touch']) wrap(MemoryStore.prototype, m);
  wrap(Store.prototype, 'createSession');
} else if (lib && config.startsWith('msm-')) {
  const { MemcachedStore } = require(path.join(lib, 'store'));
  for (const m of [
    'get',
    'set',
    'touch',
    'createSession',
    'saveNow',
    'refreshNow',
    'loaded',
    'resolve',
    'toStored',
    'encodeItem',
    'needsSave',
  ]) {
    wrap(MemcachedStore.prototype, m);
  }
  const { JsonTranscoder } = require(path.join(lib, 'transcoders', 'json'));
  for (const m of ['encode', 'decode']) wrap(JsonTranscoder.prototype, m, `json.${m}`);
  const { StickyMode } = require(path.join(lib, 'modes', 'sticky'));
  for (const m of ['loadLocal', 'save', 'result', 'backupSoon']) wrap(StickyMode.prototype, m, `sticky.${m}`);
  const { NonStickyMode } = require(path.join(lib, 'modes', 'non-sticky'));
  for (const m of ['load', 'save', 'touch']) wrap(NonStickyMode.prototype, m, `non-sticky.${m}`);
  const { NodeClient } = require(path.join(lib, 'memcached', 'node-client'));
  wrap(NodeClient.prototype, 'setInBackground', 'nodeClient.setInBackground');
  const { LRUCache } = require(require.resolve('lru-cache', { paths: [lib] }));
  for (const m of ['get', 'set', 'peek']) wrap(LRUCache.prototype, m, `lru.${m}`);
}

process.on('exit', () => {
  for (const [label, { calls, ms }] of totals) {
    process.stderr.write(`INST ${config} ${label}: ${((ms * 1000) / calls).toFixed(2)} µs x ${calls}\n`);
  }
});
