// Bytes and encode+decode time per session, JSON vs Avro vs encrypted JSON (EncryptingTranscoder), on a small, a
// typical (user + 10-item cart) and a large session. Run: npm run bench:transcoders  (writes bench/transcoders-results.json)
import { writeFileSync } from 'fs';
import * as path from 'path';
import { randomBytes } from 'crypto';
import { AvroTranscoder } from '../lib/transcoders/avro';
import { EncryptingTranscoder } from '../lib/transcoders/encrypting';
import { JsonTranscoder } from '../lib/transcoders/json';
import type { StoredSession, Transcoder, TranscoderContext } from '../lib/transcoders/transcoder';

const T0 = 1_767_000_000_000; // a fixed epoch-ms base: deterministic sessions
/** The session every value is bound to (only the EncryptingTranscoder uses it). */
const CONTEXT: TranscoderContext = { random: '6F1C0E8B5A2D4F7E9C3B1A0D8E6F4C2B' };

export const shopSchema = {
  type: 'record',
  name: 'Shop',
  namespace: 'bench',
  fields: [
    { name: 'userId', type: ['null', 'long'], default: null },
    {
      name: 'user',
      type: [
        'null',
        {
          type: 'record',
          name: 'User',
          fields: [
            { name: 'id', type: 'long' },
            { name: 'name', type: 'string' },
            { name: 'email', type: 'string' },
            { name: 'roles', type: { type: 'array', items: 'string' } },
            { name: 'locale', type: 'string' },
            { name: 'lastLogin', type: 'long' },
            { name: 'verified', type: 'boolean' },
          ],
        },
      ],
      default: null,
    },
    {
      name: 'cart',
      type: {
        type: 'array',
        items: {
          type: 'record',
          name: 'CartItem',
          fields: [
            { name: 'sku', type: 'string' },
            { name: 'name', type: 'string' },
            { name: 'qty', type: 'int' },
            { name: 'priceCents', type: 'long' },
            { name: 'addedAt', type: 'long' },
          ],
        },
      },
      default: [],
    },
    { name: 'history', type: { type: 'array', items: 'string' }, default: [] },
    { name: 'flags', type: { type: 'map', values: 'boolean' }, default: {} },
    { name: 'csrf', type: ['null', 'string'], default: null },
  ],
};

const cookie = () => ({ originalMaxAge: 86_400_000, httpOnly: true, path: '/', secure: true, sameSite: 'lax' });

function user() {
  return {
    id: 1_234_567,
    name: 'Ada Lovelace',
    email: 'ada@example.com',
    roles: ['customer', 'beta'],
    locale: 'en-GB',
    lastLogin: T0,
    verified: true,
  };
}

function cart(n: number) {
  return Array.from({ length: n }, (_, i) => ({
    sku: `SKU-${100_000 + i * 37}`,
    name: `Product number ${i}`,
    qty: 1 + (i % 4),
    priceCents: 1999 + i * 250,
    addedAt: T0 + i * 60_000,
  }));
}

export const sessions: Record<string, StoredSession> = {
  small: { cookie: cookie(), userId: 42 },
  typical: { cookie: cookie(), user: user(), cart: cart(10), csrf: 'Yw3xk9vU2bQ7pL1sT8nR4eZ6' },
  large: {
    cookie: cookie(),
    user: user(),
    cart: cart(200),
    csrf: 'Yw3xk9vU2bQ7pL1sT8nR4eZ6',
    history: Array.from({ length: 100 }, (_, i) => `/catalog/category-${i % 17}/product-${i * 13}?ref=search`),
    flags: Object.fromEntries(Array.from({ length: 30 }, (_, i) => [`feature_${i}`, i % 3 === 0])),
  },
};

/** ns per call of fn, measured over ~ms milliseconds. */
function measure(fn: () => void, ms: number): number {
  let n = 0;
  let batch = 64;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < ms * 1e6) {
    for (let i = 0; i < batch; i++) fn();
    n += batch;
    if (batch < 4096) batch *= 2;
    elapsed = Number(process.hrtime.bigint() - start);
  }
  return elapsed / n;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/**
 * Encode and decode time of each transcoder on one session. The transcoders are measured in alternating short
 * rounds and the median round is kept, so background load (other processes on the box) hits both alike.
 */
function timeBoth(
  ts: Transcoder[],
  s: StoredSession,
  rounds = 15,
  ms = 40,
): Array<{ encodeNs: number; decodeNs: number }> {
  let sink = 0;
  const fns = ts.map((t) => {
    const bytes = t.encode(s, CONTEXT);
    return {
      enc: () => {
        sink += t.encode(s, CONTEXT).length;
      },
      dec: () => {
        sink += t.decode(bytes, CONTEXT) ? 1 : 0;
      },
    };
  });
  for (const f of fns) {
    measure(f.enc, 100);
    measure(f.dec, 100);
  } // warm up (JIT)
  const samples = fns.map(() => ({ enc: [] as number[], dec: [] as number[] }));
  for (let r = 0; r < rounds; r++) {
    fns.forEach((f, i) => {
      samples[i].enc.push(measure(f.enc, ms));
      samples[i].dec.push(measure(f.dec, ms));
    });
  }
  if (sink < 0) console.log(sink);
  return samples.map((x) => ({ encodeNs: median(x.enc), decodeNs: median(x.dec) }));
}

function main(): void {
  const json = new JsonTranscoder();
  const avro = new AvroTranscoder({ schema: shopSchema as any });
  const encrypted = new EncryptingTranscoder({ keys: [{ id: 'k1', key: randomBytes(32) }] });
  const rows: any[] = [];
  for (const [name, s] of Object.entries(sessions)) {
    const jb = json.encode(s).length;
    const ab = avro.encode(s).length;
    const eb = encrypted.encode(s, CONTEXT).length;
    const [jt, at, et] = timeBoth([json, avro, encrypted], s);
    rows.push({
      session: name,
      jsonBytes: jb,
      avroBytes: ab,
      avroBytesPct: Math.round((ab / jb) * 1000) / 10,
      jsonEncodeNs: Math.round(jt.encodeNs),
      jsonDecodeNs: Math.round(jt.decodeNs),
      jsonTotalNs: Math.round(jt.encodeNs + jt.decodeNs),
      avroEncodeNs: Math.round(at.encodeNs),
      avroDecodeNs: Math.round(at.decodeNs),
      avroTotalNs: Math.round(at.encodeNs + at.decodeNs),
      avroTimePct: Math.round(((at.encodeNs + at.decodeNs) / (jt.encodeNs + jt.decodeNs)) * 1000) / 10,
      encryptedBytes: eb,
      encryptedEncodeNs: Math.round(et.encodeNs),
      encryptedDecodeNs: Math.round(et.decodeNs),
      // What encryption adds to a request that loads and saves a changed session (decode + encode) over plain JSON.
      encryptionCostNs: Math.round(et.encodeNs + et.decodeNs - jt.encodeNs - jt.decodeNs),
    });
  }
  const header = [
    'session',
    'json B',
    'avro B',
    'avro/json B',
    'json enc ns',
    'json dec ns',
    'avro enc ns',
    'avro dec ns',
    'avro/json time',
    'enc B',
    'enc enc ns',
    'enc dec ns',
    'enc +ns/req',
  ];
  const table = rows.map((r) =>
    [
      r.session,
      r.jsonBytes,
      r.avroBytes,
      `${r.avroBytesPct}%`,
      r.jsonEncodeNs,
      r.jsonDecodeNs,
      r.avroEncodeNs,
      r.avroDecodeNs,
      `${r.avroTimePct}%`,
      r.encryptedBytes,
      r.encryptedEncodeNs,
      r.encryptedDecodeNs,
      r.encryptionCostNs,
    ].map(String),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...table.map((r) => r[i].length)));
  const line = (cells: string[]) =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  console.log(line(header));
  for (const r of table) console.log(line(r));
  const out = {
    node: process.version,
    avsc: require('avsc/package.json').version,
    date: new Date().toISOString(),
    note: "per session; time = encode + decode of the store value (header included), single thread, ns per operation, median of 15 alternating rounds; encrypted = EncryptingTranscoder over JSON (AES-256-GCM, synthetic IV), encryptionCostNs = its encode + decode minus JSON's",
    loadAverage: require('os').loadavg(),
    rows,
  };
  const file = path.join(__dirname, 'transcoders-results.json');
  writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  console.log(`\nwritten ${path.relative(process.cwd(), file)}`);
}

if (require.main === module) main();
