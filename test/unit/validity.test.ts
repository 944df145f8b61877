import {
  decodeValidity,
  encodeValidity,
  isValid,
  nonStickySessionTtl,
  toMemcachedExpiration,
} from '../../lib/memcached/validity';

describe('validity record (msm SessionValidityInfo)', () => {
  it('is 20 bytes big-endian: int32 maxInactive, int64 lastAccessed, int64 thisAccessed', () => {
    const b = encodeValidity({
      maxInactiveInterval: 1800,
      lastAccessedTime: 1795314597923,
      thisAccessedTime: 1795314600000,
    });
    expect(b.length).toBe(20);
    expect(b.toString('hex')).toBe('00000708' + '000001a20116c023' + '000001a20116c840');
    expect(decodeValidity(b)).toEqual({
      maxInactiveInterval: 1800,
      lastAccessedTime: 1795314597923,
      thisAccessedTime: 1795314600000,
    });
  });

  it('writes and reads Java longs exactly across the 32-bit halves, negative ones included', () => {
    for (const t of [
      0,
      1,
      2 ** 32 - 1,
      2 ** 32,
      2 ** 32 + 1,
      1795314600000,
      8.64e15,
      -1,
      -(2 ** 32),
      -(2 ** 32) - 1,
      -8.64e15,
    ]) {
      const u = t - Math.sign(t); // the neighbour towards 0, still inside Date's range
      const b = encodeValidity({ maxInactiveInterval: -1, lastAccessedTime: t, thisAccessedTime: u });
      expect(b.readBigInt64BE(4)).toBe(BigInt(t));
      expect(b.readBigInt64BE(12)).toBe(BigInt(u));
      expect(decodeValidity(b)).toEqual({ maxInactiveInterval: -1, lastAccessedTime: t, thisAccessedTime: u });
    }
    // Beyond Date's range (a corrupt record): no record.
    const corrupt = Buffer.alloc(20);
    corrupt.writeBigInt64BE(2n ** 62n, 4);
    expect(decodeValidity(corrupt)).toBeNull();
  });

  it('rejects wrong lengths', () => {
    expect(decodeValidity(Buffer.alloc(19))).toBeNull();
    expect(decodeValidity(null)).toBeNull();
  });

  it('is valid while (now - thisAccessed) < maxInactive; maxInactive <= 0 never expires', () => {
    const now = 1_000_000_000;
    expect(isValid({ maxInactiveInterval: 10, lastAccessedTime: 0, thisAccessedTime: now - 9_999 }, now)).toBe(true);
    expect(isValid({ maxInactiveInterval: 10, lastAccessedTime: 0, thisAccessedTime: now - 10_000 }, now)).toBe(false);
    expect(isValid({ maxInactiveInterval: 0, lastAccessedTime: 0, thisAccessedTime: 0 }, now)).toBe(true);
  });
});

describe('memcached expiration', () => {
  it('keeps TTLs up to 30 days relative and sends longer ones as absolute Unix time (msm #147)', () => {
    const now = Date.UTC(2026, 10, 22);
    expect(toMemcachedExpiration(2_592_000, now)).toBe(2_592_000);
    expect(toMemcachedExpiration(2_592_001, now)).toBe(now / 1000 + 2_592_001);
    expect(toMemcachedExpiration(0, now)).toBe(0);
    expect(toMemcachedExpiration(-3, now)).toBe(0);
  });
  it('non-sticky sessions live twice maxInactive', () => {
    expect(nonStickySessionTtl(1800)).toBe(3600);
    expect(nonStickySessionTtl(0)).toBe(0);
  });
});
