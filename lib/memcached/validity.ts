// msm's SessionValidityInfo (20 bytes, big-endian) and memcached TTL arithmetic.
export const VALIDITY_LENGTH = 20;
/** Memcached reads any exptime above 30 days as an absolute Unix time. */
export const MEMCACHED_RELATIVE_TTL_LIMIT = 60 * 60 * 24 * 30;

/** msm's validity record (SessionValidityInfo): 20 bytes stored as `validity:<id>` beside each session. */
export interface Validity {
  /** s; <= 0 means never expires (msm). */
  maxInactiveInterval: number;
  /** ms */
  lastAccessedTime: number;
  /** ms */
  thisAccessedTime: number;
}

/** The validity record's 20 bytes, big-endian, exactly as Java msm writes them. */
export function encodeValidity(v: Validity): Buffer {
  const b = Buffer.allocUnsafe(VALIDITY_LENGTH);
  b.writeInt32BE(v.maxInactiveInterval | 0, 0);
  writeInt64(b, Math.trunc(v.lastAccessedTime), 4);
  writeInt64(b, Math.trunc(v.thisAccessedTime), 12);
  return b;
}

/** A Java long from a safe integer, as two 32-bit halves: BigInt costs more than the rest of the record. */
function writeInt64(b: Buffer, n: number, at: number): void {
  const high = Math.floor(n / 2 ** 32);
  b.writeInt32BE(high, at);
  b.writeUInt32BE(n - high * 2 ** 32, at + 4);
}

/** Exact below 2^53; larger (corrupt) values come back approximate and fail the range check. */
function readInt64(b: Buffer, at: number): number {
  return b.readInt32BE(at) * 2 ** 32 + b.readUInt32BE(at + 4);
}

/** Reads a validity record; null for anything that is not one. */
export function decodeValidity(b: Buffer | null | undefined): Validity | null {
  if (!b || b.length !== VALIDITY_LENGTH) return null;
  const v = {
    maxInactiveInterval: b.readInt32BE(0),
    lastAccessedTime: readInt64(b, 4),
    thisAccessedTime: readInt64(b, 12),
  };
  // Corrupt records (times outside Date's range) are no record: they would make `new Date(t)` throw later.
  if (!(Math.abs(v.lastAccessedTime) <= MAX_DATE_MS && Math.abs(v.thisAccessedTime) <= MAX_DATE_MS)) return null;
  return v;
}

/** Largest time a Date can hold (ECMAScript: 8.64e15 ms). */
const MAX_DATE_MS = 8.64e15;

export function isValid(v: Validity, now = Date.now()): boolean {
  return v.maxInactiveInterval <= 0 || (now - v.thisAccessedTime) / 1000 < v.maxInactiveInterval;
}

/** Relative seconds -> memcached exptime: 0 stays "never", above 30 days becomes absolute Unix time (msm #147). */
export function toMemcachedExpiration(seconds: number, now = Date.now()): number {
  if (seconds <= 0) return 0;
  const s = Math.ceil(seconds);
  return s > MEMCACHED_RELATIVE_TTL_LIMIT ? Math.floor(now / 1000) + s : s;
}

/** Non-sticky msm: the session (and bak:) live 2x maxInactive so validity decides expiry; validity lives maxInactive. */
export function nonStickySessionTtl(maxInactive: number): number {
  return maxInactive <= 0 ? 0 : 2 * maxInactive;
}
