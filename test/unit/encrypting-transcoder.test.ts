// Issue 13: EncryptingTranscoder as a pure function: round trip, determinism, rotation, binding to the session,
// tampering, option errors.
import { randomBytes } from 'crypto';
import { EncryptingTranscoder } from '../../lib/transcoders/encrypting';
import { AvroTranscoder } from '../../lib/transcoders/avro';
import { JsonTranscoder } from '../../lib/transcoders/json';
import type { StoredSession, Transcoder } from '../../lib/transcoders/transcoder';

const k1 = { id: 'k1', key: randomBytes(32) };
const k2 = { id: 'k2', key: randomBytes(32).toString('base64') };
const ctx = { random: '0123456789ABCDEF0123456789ABCDEF' };
const other = { random: 'FEDCBA9876543210FEDCBA9876543210' };
const session: StoredSession = {
  cookie: { originalMaxAge: 60_000, httpOnly: true, path: '/' },
  userId: 'ada@example.com',
  cart: ['SKU-1', 'SKU-2'],
};

describe('EncryptingTranscoder', () => {
  const t = new EncryptingTranscoder({ keys: [k1] });

  it('round-trips through JSON by default, and the bytes hold none of the plaintext', () => {
    const bytes = t.encode(session, ctx);
    expect(t.decode(bytes, ctx)).toEqual(session);
    expect([...bytes.subarray(0, 4)]).toEqual([0x4d, 0x53, 1, 3]);
    const text = bytes.toString('latin1');
    for (const plain of ['ada@example.com', 'SKU-1', 'originalMaxAge', 'userId', '{"'])
      expect(text).not.toContain(plain);
    expect(t.name).toBe('encrypted-json');
  });

  it('is deterministic per session (unchanged sessions are not rewritten) and differs between sessions', () => {
    expect(t.encode(session, ctx).equals(t.encode(session, ctx))).toBe(true);
    expect(t.encode(session, ctx).equals(t.encode(session, other))).toBe(false);
    expect(t.encode(session, ctx).equals(t.encode({ ...session, n: 1 }, ctx))).toBe(false);
  });

  it('is bound to the session: bytes read under another session id do not decrypt', () => {
    expect(t.decode(t.encode(session, ctx), other)).toBeNull();
  });

  it('rotation: writes with the first key, reads with any listed key; a key no longer listed gives null', () => {
    const old = t.encode(session, ctx);
    const rotated = new EncryptingTranscoder({ keys: [k2, k1] });
    expect(rotated.writeKeyId).toBe('k2');
    expect(rotated.decode(old, ctx)).toEqual(session);
    const fresh = rotated.encode(session, ctx);
    expect(fresh.toString('latin1', 5, 7)).toBe('k2');
    expect(t.decode(fresh, ctx)).toBeNull(); // an instance that does not know k2 yet
    expect(new EncryptingTranscoder({ keys: [k2] }).decode(old, ctx)).toBeNull(); // k1 retired
    // Same id, other key material: the tag does not verify.
    expect(new EncryptingTranscoder({ keys: [{ id: 'k1', key: randomBytes(32) }] }).decode(old, ctx)).toBeNull();
  });

  it('any changed byte, truncation or extension gives null, never a throw', () => {
    const bytes = t.encode(session, ctx);
    for (let i = 0; i < bytes.length; i++) {
      const b = Buffer.from(bytes);
      b[i] ^= 0x01;
      expect(t.decode(b, ctx)).toBeNull();
    }
    for (let n = 0; n < bytes.length; n++) expect(t.decode(bytes.subarray(0, n), ctx)).toBeNull();
    expect(t.decode(Buffer.concat([bytes, Buffer.from([0])]), ctx)).toBeNull();
  });

  it('values of other transcoders, and calls without a context: null on decode, an error on encode', () => {
    expect(t.decode(new JsonTranscoder().encode(session), ctx)).toBeNull();
    expect(t.decode(t.encode(session, ctx))).toBeNull();
    expect(() => t.encode(session)).toThrow(/needs the session/);
  });

  it('wraps any transcoder (Avro) and hands it the context', () => {
    const avro = new AvroTranscoder({
      schema: {
        type: 'record',
        name: 'S',
        fields: [{ name: 'userId', type: ['null', 'string'], default: null }],
      } as any,
    });
    const seen: unknown[] = [];
    const spy: Transcoder = {
      name: 'spy',
      encode: (s, c) => (seen.push(c), avro.encode(s)),
      decode: (b, c) => (seen.push(c), avro.decode(b)),
    };
    const e = new EncryptingTranscoder({ keys: [k1], transcoder: spy });
    const s = { cookie: { originalMaxAge: 1000 }, userId: 'u1' };
    expect(e.decode(e.encode(s, ctx), ctx)).toMatchObject({ userId: 'u1' });
    expect(seen).toEqual([ctx, ctx]);
  });

  it('rejects bad options with a clear message', () => {
    expect(() => new EncryptingTranscoder({ keys: [] })).toThrow(/at least one/);
    expect(() => new EncryptingTranscoder(undefined as any)).toThrow(/keys/);
    expect(() => new EncryptingTranscoder({ keys: [{ id: 'k', key: randomBytes(16) }] })).toThrow(/32 bytes/);
    expect(() => new EncryptingTranscoder({ keys: [{ id: 'k', key: 'not base64!!' }] })).toThrow(/base64/);
    expect(() => new EncryptingTranscoder({ keys: [{ id: 'k', key: 42 as any }] })).toThrow(/32 bytes/);
    expect(() => new EncryptingTranscoder({ keys: [{ id: 'bad id', key: randomBytes(32) }] })).toThrow(/id must be/);
    expect(() => new EncryptingTranscoder({ keys: [k1, { ...k1 }] })).toThrow(/duplicate/);
    expect(() => new EncryptingTranscoder({ keys: [k1], transcoder: {} as any })).toThrow(/encode/);
  });
});
