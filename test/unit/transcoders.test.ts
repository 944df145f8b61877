// Issue 5: JSON and Avro transcoders: round trips, schema evolution, header mismatch, corrupt bytes, errors.
import fc from 'fast-check';
import { AvroTranscoder, MAX_AVRO_LONG, MIN_AVRO_LONG, fingerprint64 } from '../../lib/transcoders/avro';
import { JsonTranscoder } from '../../lib/transcoders/json';
import { HEADER_LENGTH, type StoredSession, type Transcoder, TranscoderKind } from '../../lib/transcoders/transcoder';
import { testStores } from '../helpers/store';

const json = new JsonTranscoder();

/** Every Avro type an app is likely to put in a session. */
const everySchema = {
  type: 'record',
  name: 'Every',
  namespace: 'test',
  fields: [
    { name: 'nul', type: 'null', default: null },
    { name: 'flag', type: ['null', 'boolean'], default: null },
    { name: 'i', type: ['null', 'int'], default: null },
    { name: 'l', type: ['null', 'long'], default: null },
    { name: 'f', type: ['null', 'float'], default: null },
    { name: 'd', type: ['null', 'double'], default: null },
    { name: 's', type: ['null', 'string'], default: null },
    { name: 'b', type: ['null', 'bytes'], default: null },
    {
      name: 'color',
      type: ['null', { type: 'enum', name: 'Color', symbols: ['RED', 'GREEN', 'BLUE'] }],
      default: null,
    },
    { name: 'fx', type: ['null', { type: 'fixed', name: 'Four', size: 4 }], default: null },
    { name: 'tags', type: { type: 'array', items: 'string' }, default: [] },
    { name: 'counts', type: { type: 'map', values: 'long' }, default: {} },
    { name: 'at', type: ['null', { type: 'long', logicalType: 'timestamp-millis' }], default: null },
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
            {
              name: 'address',
              type: [
                'null',
                {
                  type: 'record',
                  name: 'Address',
                  fields: [
                    { name: 'city', type: 'string' },
                    { name: 'zip', type: ['null', 'string'], default: null },
                  ],
                },
              ],
              default: null,
            },
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
          name: 'Item',
          fields: [
            { name: 'sku', type: 'string' },
            { name: 'qty', type: 'int' },
            { name: 'price', type: 'double' },
          ],
        },
      },
      default: [],
    },
    { name: 'visits', type: 'int', default: 0 },
  ],
};

const cookieArb = fc.record(
  {
    originalMaxAge: fc.oneof(
      fc.constant(null),
      fc.integer({ min: 0, max: 2 ** 31 }),
      fc.double({ min: 0, max: 1e12, noNaN: true }),
    ),
    httpOnly: fc.boolean(),
    path: fc.constantFrom('/', '/app'),
    secure: fc.boolean(),
    sameSite: fc.constantFrom(true, false, 'lax', 'strict', 'none'),
    domain: fc.string(),
    partitioned: fc.boolean(),
    priority: fc.constantFrom('low', 'medium', 'high'),
  },
  { requiredKeys: ['originalMaxAge'] },
);

/** Values conforming to everySchema (absent or non-null: Avro cannot tell a null attribute from an absent one). */
const everyArb = fc.record(
  {
    flag: fc.boolean(),
    i: fc.integer(),
    l: fc.integer({ min: MIN_AVRO_LONG, max: MAX_AVRO_LONG }),
    f: fc.float({ noNaN: true }),
    d: fc.double(),
    s: fc.string({ unit: 'binary' }),
    b: fc.uint8Array({ maxLength: 20 }).map((a) => Buffer.from(a)),
    color: fc.constantFrom('RED', 'GREEN', 'BLUE'),
    fx: fc.uint8Array({ minLength: 4, maxLength: 4 }).map((a) => Buffer.from(a)),
    tags: fc.array(fc.string()),
    counts: fc.dictionary(
      fc.string().filter((k) => k !== '__proto__'),
      fc.integer({ min: MIN_AVRO_LONG, max: MAX_AVRO_LONG }),
    ),
    at: fc.date({ noInvalidDate: true, min: new Date(MIN_AVRO_LONG) }),
    user: fc.record({
      id: fc.maxSafeNat().map((n) => Math.min(n, MAX_AVRO_LONG)),
      name: fc.string(),
      address: fc.option(fc.record({ city: fc.string(), zip: fc.option(fc.string()) }), { nil: null }),
    }),
    cart: fc.array(fc.record({ sku: fc.string(), qty: fc.integer(), price: fc.double() }), { maxLength: 12 }),
    visits: fc.integer(),
  },
  { requiredKeys: [] },
);

function roundTrip(t: Transcoder, s: StoredSession): StoredSession | null {
  return t.decode(t.encode(s));
}

describe('JsonTranscoder', () => {
  it('round-trips arbitrary JSON attributes (every JSON type, nested objects, arrays)', () => {
    const attrName = fc.string().filter((k) => k !== 'cookie' && k !== '__proto__');
    fc.assert(
      fc.property(cookieArb, fc.dictionary(attrName, fc.jsonValue()), (cookie, attrs) => {
        const s = { ...attrs, cookie } as StoredSession;
        const bytes = json.encode(s);
        expect(json.decode(bytes)).toEqual(JSON.parse(JSON.stringify(s))); // -0 becomes 0, like any JSON
        expect(json.encode(json.decode(bytes)!)).toEqual(bytes); // deterministic: decode + encode is a fixed point
      }),
      { numRuns: 300 },
    );
  });

  it('keeps large integers and 64-bit times exact (up to 2^53), and doubles beyond', () => {
    const s = {
      cookie: { originalMaxAge: 1000 },
      a: Number.MAX_SAFE_INTEGER,
      b: -Number.MAX_SAFE_INTEGER,
      now: Date.now(),
      big: 2 ** 62,
      tiny: 5e-324,
      max: Number.MAX_VALUE,
    };
    expect(roundTrip(json, s)).toEqual(s);
  });

  it('turns a Date attribute into its ISO string (JSON has no dates)', () => {
    const d = new Date(1_767_000_000_123);
    expect(roundTrip(json, { cookie: { originalMaxAge: 1 }, at: d })!.at).toBe(d.toISOString());
  });
});

describe('AvroTranscoder', () => {
  const avro = new AvroTranscoder({ schema: everySchema as any });

  it('writes header (kind avro) + the CRC-64-AVRO fingerprint of the schema + the body', () => {
    const b = avro.encode({ cookie: { originalMaxAge: 1000 } });
    expect([...b.subarray(0, HEADER_LENGTH)]).toEqual([0x4d, 0x53, 1, TranscoderKind.avro]);
    expect(b.subarray(4, 12).toString('hex')).toBe(avro.fingerprint);
    // The Avro spec's published fingerprints of primitive schemas.
    expect(fingerprint64('"null"').readBigInt64LE(0)).toBe(7195948357588979594n);
    expect(fingerprint64('"int"').readBigInt64LE(0)).toBe(8247732601305521295n);
  });

  it('round-trips arbitrary values conforming to the schema, deterministically', () => {
    fc.assert(
      fc.property(cookieArb, everyArb, (cookie, attrs) => {
        const s = { cookie, ...attrs } as StoredSession;
        const bytes = avro.encode(s);
        const back = avro.decode(bytes)!;
        expect(back).not.toBeNull();
        const expected: any = { visits: 0, tags: [], counts: {}, cart: [], ...s };
        expect(back).toEqual(expected);
        if (attrs.at) expect((back.at as Date).getTime()).toBe(attrs.at.getTime());
        expect(avro.encode(s)).toEqual(bytes);
        expect(avro.encode(back)).toEqual(bytes); // decode + encode is a fixed point: unchanged sessions are not rewritten
      }),
      { numRuns: 300 },
    );
  });

  it('keeps large integers exact: long in [-2^52, 2^53 - 2] (avsc range), double for the rest', () => {
    const t = new AvroTranscoder({
      schema: {
        type: 'record',
        name: 'Big',
        fields: [
          { name: 'a', type: 'long' },
          { name: 'b', type: 'long' },
          { name: 'now', type: 'long' },
          { name: 'd', type: { type: 'array', items: 'double' } },
        ],
      },
    });
    const s = {
      cookie: { originalMaxAge: 1000 },
      a: MAX_AVRO_LONG,
      b: MIN_AVRO_LONG,
      now: Date.now(),
      d: [Number.MAX_SAFE_INTEGER, 2 ** 62, -0, 5e-324, Infinity, NaN],
    };
    const back = roundTrip(t, s)!;
    expect(back).toEqual(s);
    expect(Object.is((back.d as number[])[2], -0)).toBe(true);
    expect(() => t.encode({ ...s, a: Number.MAX_SAFE_INTEGER })).toThrow(/"a" does not fit/);
    // avsc would silently write -2^52 - 1 as -2^52 - 2: refused instead.
    expect(() => t.encode({ ...s, b: MIN_AVRO_LONG - 1 })).toThrow(/"b" does not fit/);
    expect(() => t.encode({ ...s, b: -MAX_AVRO_LONG })).toThrow(/"b" does not fit/);
  });

  it.each([
    [
      'with maxAge (expires rebuilt by the store)',
      {
        originalMaxAge: 3_600_000,
        httpOnly: true,
        path: '/',
        secure: true,
        sameSite: 'strict',
        domain: 'example.com',
        partitioned: true,
        priority: 'high',
      },
    ],
    ['browser-session cookie', { originalMaxAge: null, expires: null, httpOnly: true, path: '/' }],
    ['with an explicit expiry', { originalMaxAge: null, expires: '2030-01-02T03:04:05.678Z', path: '/' }],
    ['sameSite true', { originalMaxAge: 1, sameSite: true }],
    ['sameSite false', { originalMaxAge: 1, sameSite: false }],
    ['fractional maxAge', { originalMaxAge: 1500.25 }],
    ['huge maxAge', { originalMaxAge: 2 ** 60 }],
  ])('round-trips the cookie %s, in both transcoders', (_n, cookie) => {
    const s = { cookie, visits: 3 } as StoredSession;
    const drop = (c: any) => Object.fromEntries(Object.entries(c).filter(([, v]) => v !== null || _n === 'x'));
    expect(roundTrip(json, s)).toEqual(s);
    const back = roundTrip(avro, s)!;
    // Avro keeps originalMaxAge (null included) and every non-null field; expires: null comes back absent, which the
    // store turns back into null (restoreExpires), like express-session's own default.
    expect(back.cookie).toEqual({ ...drop(cookie), originalMaxAge: cookie.originalMaxAge });
    expect(back.visits).toBe(3);
  });

  it('accepts a Date, epoch ms or an ISO string for timestamp-millis and returns a Date', () => {
    const d = new Date(1_767_000_000_123);
    for (const at of [d, d.getTime(), d.toISOString()]) {
      expect(roundTrip(avro, { cookie: { originalMaxAge: 1 }, at })!.at).toEqual(d);
    }
  });

  it('returns absent (not null) for null attributes and fills defaults for missing ones', () => {
    const back = roundTrip(avro, { cookie: { originalMaxAge: 1 }, user: null, s: null })!;
    expect(back).toEqual({ cookie: { originalMaxAge: 1 }, visits: 0, tags: [], counts: {}, cart: [] });
    expect('user' in back).toBe(false);
  });

  describe('schema evolution', () => {
    const v1 = {
      type: 'record',
      name: 'Shop',
      fields: [
        { name: 'user', type: ['null', 'string'], default: null },
        { name: 'visits', type: 'int', default: 0 },
        { name: 'legacyFlag', type: 'boolean', default: false },
      ],
    };
    const v2 = {
      type: 'record',
      name: 'Shop',
      fields: [
        { name: 'user', type: ['null', 'string'], default: null },
        { name: 'visits', type: 'int', default: 0 },
        { name: 'theme', type: 'string', default: 'light' }, // added, with default
        { name: 'cart', type: { type: 'array', items: 'string' }, default: [] }, // added
        // legacyFlag removed
      ],
    };
    const s1 = { cookie: { originalMaxAge: 60_000, path: '/' }, user: 'ada', visits: 7, legacyFlag: true };

    it('reads a value written with v1 into v2: added fields get defaults, removed fields are dropped', () => {
      const w1 = new AvroTranscoder({ schema: v1 });
      const r2 = new AvroTranscoder({ schema: v2, previousSchemas: [v1] });
      expect(w1.fingerprint).not.toBe(r2.fingerprint);
      const back = r2.decode(w1.encode(s1));
      expect(back).toEqual({
        cookie: { originalMaxAge: 60_000, path: '/' },
        user: 'ada',
        visits: 7,
        theme: 'light',
        cart: [],
      });
      // Re-saved by v2: written with the v2 fingerprint.
      expect(r2.encode(back!).subarray(4, 12).toString('hex')).toBe(r2.fingerprint);
    });

    it('an instance without the old schema treats the value as no session (unknown fingerprint), never throws', () => {
      const w1 = new AvroTranscoder({ schema: v1 });
      expect(new AvroTranscoder({ schema: v2 }).decode(w1.encode(s1))).toBeNull();
    });

    it('two-phase rollout: the old schema can read the new one when told about it (fields removed need defaults)', () => {
      const r1 = new AvroTranscoder({ schema: v1, previousSchemas: [v2] });
      const w2 = new AvroTranscoder({ schema: v2, previousSchemas: [v1] });
      const back = r1.decode(w2.encode({ cookie: { originalMaxAge: 1 }, user: 'bob', visits: 2, theme: 'dark' }));
      expect(back).toEqual({ cookie: { originalMaxAge: 1 }, user: 'bob', visits: 2, legacyFlag: false });
    });

    it('promotes int to long (Avro resolution rules)', () => {
      const v2long = { ...v2, fields: v2.fields.map((f) => (f.name === 'visits' ? { ...f, type: 'long' } : f)) };
      const back = new AvroTranscoder({ schema: v2long, previousSchemas: [v1] }).decode(
        new AvroTranscoder({ schema: v1 }).encode(s1),
      );
      expect(back!.visits).toBe(7);
    });

    it('refuses at construction a previous schema it cannot resolve (added field without default)', () => {
      const v3 = { type: 'record', name: 'Shop', fields: [...v2.fields, { name: 'required', type: 'string' }] };
      expect(() => new AvroTranscoder({ schema: v3, previousSchemas: [v1] })).toThrow(/previousSchemas\[0\].*defaults/);
    });

    it('ignores a previous schema equal to the current one in canonical form', () => {
      const withDoc = { ...v1, doc: 'same canonical form' };
      const t = new AvroTranscoder({ schema: v1, previousSchemas: [withDoc] });
      expect(t.decode(t.encode(s1))).toEqual(s1);
    });
  });

  describe('never mis-decodes, never throws', () => {
    const s = {
      cookie: { originalMaxAge: 1000 },
      user: { id: 1, name: 'x', address: null },
      tags: ['a', 'b'],
      visits: 2,
    } as StoredSession;

    it('header mismatch: a JSON value read by Avro and an Avro value read by JSON give null', () => {
      expect(avro.decode(json.encode(s))).toBeNull();
      expect(json.decode(avro.encode(s))).toBeNull();
    });

    it('every truncation of a value and trailing bytes give null', () => {
      const b = avro.encode(s);
      for (let n = 0; n < b.length; n++) expect(avro.decode(b.subarray(0, n))).toBeNull();
      expect(avro.decode(Buffer.concat([b, Buffer.from([0])]))).toBeNull();
    });

    it('random bytes, with and without a valid prefix, never throw', () => {
      const prefix = avro.encode({ cookie: { originalMaxAge: 1 } }).subarray(0, 12);
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), fc.boolean(), (body, withPrefix) => {
          const bytes = withPrefix ? Buffer.concat([prefix, body]) : Buffer.from(body);
          const r = avro.decode(bytes);
          expect(r === null || typeof r === 'object').toBe(true);
          expect(json.decode(bytes) === null || typeof json.decode(bytes) === 'object').toBe(true);
        }),
        { numRuns: 2000 },
      );
    });

    it('corrupted bytes (one byte changed anywhere) never throw', () => {
      const b = avro.encode(s);
      for (let i = 0; i < b.length; i++) {
        for (const v of [0x00, 0x7f, 0x80, 0xff]) {
          const c = Buffer.from(b);
          c[i] = v;
          expect(() => avro.decode(c)).not.toThrow();
        }
      }
    });
  });

  describe('a session that does not fit the schema: encode throws naming the attribute', () => {
    const base = { cookie: { originalMaxAge: 1000 } };
    it.each([
      ['wrong type', { visits: 'many' }, /"visits" does not fit.*expected "int", got "many"/],
      ['wrong nested type', { user: { id: 1.5, name: 'x' } }, /"user\.id" does not fit.*"long"/],
      ['missing required nested field', { user: { id: 1 } }, /"user\.name" does not fit.*missing/],
      [
        'wrong array item',
        {
          cart: [
            { sku: 'a', qty: 1, price: 1 },
            { sku: 'b', qty: 'x', price: 1 },
          ],
        },
        /"cart\[1\]\.qty" does not fit/,
      ],
      [
        'undeclared attribute',
        { flash: ['hi'] },
        /"flash" is not in the Avro schema test\.Every.*sessionAttributeFilter/,
      ],
      [
        'undeclared nested field',
        { user: { id: 1, name: 'x', password: 'p' } },
        /"user\.password" is not in the Avro schema/,
      ],
      [
        'undeclared field in an array item',
        { cart: [{ sku: 'a', qty: 1, price: 1, note: 'x' }] },
        /"cart\[0\]\.note" is not in/,
      ],
      ['Date in a string field', { s: new Date(0) }, /"s" does not fit.*timestamp-millis/],
      ['long beyond 2^53', { l: 2 ** 60 }, /"l" does not fit/],
      ['invalid Date', { at: new Date(NaN) }, /"at" does not fit.*timestamp-millis.*Invalid Date/],
      ['Date before -2^52 ms', { at: new Date(-8.64e15) }, /"at" does not fit.*timestamp-millis holds Dates from/],
    ])('%s', (_n, attrs, message) => {
      expect(() => avro.encode({ ...base, ...attrs } as StoredSession)).toThrow(message);
    });
  });

  it('validates the schema at construction', () => {
    expect(() => new AvroTranscoder({ schema: 'string' })).toThrow(/named Avro record/);
    expect(
      () => new AvroTranscoder({ schema: { type: 'record', name: 'X', fields: [{ name: 'cookie', type: 'string' }] } }),
    ).toThrow(/"cookie"/);
    expect(
      () => new AvroTranscoder({ schema: { type: 'record', name: 'X', fields: [{ name: 'a', type: 'nope' }] } }),
    ).toThrow(/not a valid Avro schema/);
    expect(() => new AvroTranscoder(undefined as any)).toThrow(/needs \{ schema \}/);
  });

  it('grows its scratch buffer for large sessions and stays correct', () => {
    const t = new AvroTranscoder({
      schema: {
        type: 'record',
        name: 'L',
        fields: [
          { name: 'blob', type: 'string' },
          { name: 'xs', type: { type: 'array', items: 'string' } },
        ],
      },
    });
    for (const n of [10, 20_000, 3_000_000]) {
      const s = {
        cookie: { originalMaxAge: 1 },
        blob: 'x'.repeat(n),
        xs: Array.from({ length: 100 }, (_, i) => 'y'.repeat(i * 10)),
      };
      expect(t.decode(t.encode(s))).toEqual(s);
    }
  });
});

describe('custom transcoders and sessionAttributeFilter (store side, every transcoder)', () => {
  /** A custom transcoder: the documented contract, nothing else. */
  class Recording implements Transcoder {
    readonly name = 'recording';
    seen: StoredSession[] = [];
    encode(session: StoredSession): Buffer {
      this.seen.push(session);
      return Buffer.from('X' + JSON.stringify(session));
    }
    decode(bytes: Buffer): StoredSession | null {
      return bytes[0] === 0x58 ? JSON.parse(bytes.toString('utf8', 1)) : null;
    }
  }
  const { newStore: storeWith, closeStores } = testStores(() => ({ memcachedNodes: 'n1:127.0.0.1:1' }));
  afterAll(closeStores);
  const session = () =>
    ({
      cookie: { originalMaxAge: 1000, path: '/', httpOnly: true },
      user: 'ada',
      cart: ['a'],
      flash: 'hi',
      userAgent: 'x',
    }) as any;

  it.each([
    ['string', '^(user|cart)$'],
    ['RegExp', /^(user|cart)$/],
    ['RegExp with the g flag (stateless all the same)', /^(user|cart)$/g],
  ])('stores only matching top-level attributes, cookie always (%s)', (_n, filter) => {
    const store = storeWith({ sessionAttributeFilter: filter });
    for (let i = 0; i < 3; i++)
      expect(store.toStored(session())).toEqual({
        cookie: { originalMaxAge: 1000, path: '/', httpOnly: true },
        user: 'ada',
        cart: ['a'],
      });
  });

  it('lets Avro stores keep undeclared attributes out of the schema', () => {
    const avro = new AvroTranscoder({
      schema: {
        type: 'record',
        name: 'S',
        fields: [
          { name: 'user', type: ['null', 'string'], default: null },
          { name: 'cart', type: { type: 'array', items: 'string' }, default: [] },
        ],
      },
    });
    const store = storeWith({ transcoder: avro, sessionAttributeFilter: '^(user|cart)$' });
    expect(avro.decode(avro.encode(store.toStored(session())))).toEqual({
      cookie: { originalMaxAge: 1000, path: '/', httpOnly: true },
      user: 'ada',
      cart: ['a'],
    });
    expect(() => avro.encode(storeWith({ transcoder: avro }).toStored(session()))).toThrow(
      /"flash" is not in the Avro schema/,
    );
  });

  it('passes plain data to a custom transcoder', () => {
    const t = new Recording();
    const store = storeWith({ transcoder: t });
    const stored = store.toStored(session());
    expect(t.decode(t.encode(stored))).toEqual(stored);
    expect(t.seen[0]).toEqual({
      cookie: { originalMaxAge: 1000, path: '/', httpOnly: true },
      user: 'ada',
      cart: ['a'],
      flash: 'hi',
      userAgent: 'x',
    });
    expect(() => storeWith({ transcoder: { encode: 1 } as any })).toThrow(/invalid transcoder/);
  });
});
