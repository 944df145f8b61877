// Mocha --require hook for scripts/express-session-suite.sh: makes express-session's own tests (run from a temporary
// copy of an express-session checkout, the working directory) use MemcachedStore wherever they use MemoryStore.
// Env: ESS_DIST (this repo's dist/index.js), ESS_NODES (msm memcachedNodes),
// ESS_CONFIG: plain (express-session's own ids) | genid (genid: store.genid) | sticky (route 'a', genid: store.genid).
'use strict';
const Module = require('module');
const path = require('path');

const root = process.cwd();
const entry = require.resolve(path.join(root, 'index.js'));
const config = process.env.ESS_CONFIG || 'plain';
if (!['plain', 'genid', 'sticky'].includes(config)) throw new Error(`ESS_CONFIG: unknown configuration ${config}`);

// MemcachedStore must extend the Store of the express-session under test, not the one in this repo's node_modules.
const resolve = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  return request === 'express-session' ? entry : resolve.call(this, request, ...rest);
};

const real = require(entry);
const { MemcachedStore } = require(process.env.ESS_DIST);
const stores = [];

function newStore() {
  // Each store its own key prefix: like each test's own MemoryStore, it sees (lists, counts, clears) only its sessions.
  const store = new MemcachedStore({
    memcachedNodes: process.env.ESS_NODES,
    storageKeyPrefix: `static:es${stores.length}`,
    sticky: config === 'sticky',
    route: config === 'sticky' ? 'a' : undefined,
  });
  stores.push(store);
  return store;
}

// `new session.MemoryStore()` in the tests, and the store session() creates when given none.
function MemoryStore() {
  return newStore();
}

function session(options) {
  const opts = Object.assign({}, options);
  if (!opts.store) opts.store = newStore();
  if (config !== 'plain' && !('genid' in opts) && opts.store instanceof MemcachedStore) opts.genid = opts.store.genid;
  return real(opts);
}
Object.assign(session, real, { MemoryStore });
require.cache[entry].exports = session;

exports.mochaHooks = {
  async afterAll() {
    this.timeout(60_000); // one store per test: about 150 to close
    await Promise.all(stores.splice(0).map((s) => s.close()));
  },
};
