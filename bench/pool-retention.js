// What sticky's local copies would cost in memory as slices of Node's shared buffer pool, against buffers of their own
// (lib/modes/sticky.ts ownMemory; docs/sticky.md). Sessions of 1.3 KB, rewritten in random order between other small
// allocations, as requests do. Usage: node --expose-gc bench/pool-retention.js [sessions] [bytes]
'use strict';

const SIZE = Number(process.argv[3] ?? 1300);

function run(own, sessions) {
  const alloc = own ? (n) => Buffer.allocUnsafeSlow(n) : (n) => Buffer.allocUnsafe(n);
  const held = new Array(sessions);
  const churn = () => {
    // What else a request allocates from the pool (frames, small encodes).
    Buffer.allocUnsafe(200);
    Buffer.allocUnsafe(300);
  };
  for (let i = 0; i < sessions; i++) {
    held[i] = alloc(SIZE);
    churn();
  }
  for (let round = 0; round < 5; round++) {
    for (let i = 0; i < sessions; i++) {
      if (Math.random() < 0.5) continue;
      held[i] = alloc(SIZE);
      churn();
    }
  }
  global.gc();
  global.gc();
  const pools = new Set(held.map((b) => b.buffer));
  let bytes = 0;
  for (const p of pools) bytes += p.byteLength;
  return { pools: pools.size, mb: bytes / 1e6 };
}

if (typeof global.gc !== 'function') {
  console.error('run with node --expose-gc');
  process.exit(2);
}
const sessions = Number(process.argv[2] ?? 20_000);
console.log(`${sessions} sessions of ${SIZE} bytes: ${((sessions * SIZE) / 1e6).toFixed(1)} MB of session bytes`);
for (const own of [false, true]) {
  const r = run(own, sessions);
  console.log(`${own ? 'own memory  ' : 'pool slices '}: ${r.mb.toFixed(1)} MB held in ${r.pools} ArrayBuffers`);
}
