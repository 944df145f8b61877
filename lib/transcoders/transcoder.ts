// The transcoder contract and the small header every stored value starts with, so a value written by another
// transcoder or format version is recognised as "not mine" (no session), never mis-decoded.

/** The cookie part express-session needs back (Cookie.toJSON's fields). `expires` is kept by the store, see store.ts. */
export interface StoredCookie {
  /** ms the cookie was given to live, or null for a browser-session cookie. */
  originalMaxAge: number | null;
  /** When the cookie expires. */
  expires?: string | Date | null | undefined;
  /** Cookie attribute `Secure`. */
  secure?: boolean | undefined;
  /** Cookie attribute `HttpOnly`. */
  httpOnly?: boolean | undefined;
  /** Cookie attribute `Domain`. */
  domain?: string | undefined;
  /** Cookie attribute `Path`. */
  path?: string | undefined;
  /** Cookie attribute `SameSite`. */
  sameSite?: boolean | 'lax' | 'strict' | 'none' | string | undefined;
  /** Cookie attribute `Partitioned`. */
  partitioned?: boolean | undefined;
  /** Cookie attribute `Priority`. */
  priority?: 'low' | 'medium' | 'high' | string | undefined;
  [k: string]: unknown;
}

/** s a session may stay idle: the cookie's maxAge, else its expires, else `fallback`. <= 0 means already expired. */
export function maxInactiveOfCookie(cookie: StoredCookie | undefined, fallback: number): number {
  const oma = cookie?.originalMaxAge;
  if (typeof oma === 'number' && Number.isFinite(oma)) return Math.ceil(oma / 1000);
  if (cookie?.expires) {
    const t = new Date(cookie.expires as string).getTime();
    if (Number.isFinite(t)) return Math.ceil((t - Date.now()) / 1000);
  }
  return fallback;
}

/**
 * What a transcoder encodes and decodes: plain data, the cookie plus the app's top-level attributes. No cookie only
 * when the app stored a session without one (store.set): like MemoryStore, it comes back without one.
 */
export interface StoredSession {
  /** express-session's cookie. */
  cookie?: StoredCookie | undefined;
  [attribute: string]: unknown;
}

/**
 * Which session the bytes belong to, for transcoders that bind them to it (EncryptingTranscoder). The store passes it
 * to every encode and decode; transcoders that do not need it ignore it.
 */
export interface TranscoderContext {
  /**
   * The session id without its node and route suffix (`<random>` of `<random>-<node>[.<route>]`). The same bytes are
   * stored under `<id>` and `bak:<id>`, and moved unchanged to another id by relocation and route takeover: all keep
   * this part, so it is what bytes can be bound to.
   */
  readonly random: string;
}

/** Session <-> bytes: the `transcoder` option. Implement it for a format of your own (docs/transcoders.md). */
export interface Transcoder {
  /** Short name for logs and stats, e.g. 'json', 'avro'. */
  readonly name: string;
  /** Must be deterministic: the store compares bytes to skip rewriting unchanged sessions. Throws on data it cannot store. */
  encode(session: StoredSession, context?: TranscoderContext): Buffer;
  /** null for anything it did not write (other transcoder, other version, corrupt bytes). Must not throw. */
  decode(bytes: Buffer, context?: TranscoderContext): StoredSession | null;
}

/** 'M','S' */
export const MAGIC0 = 0x4d;
export const MAGIC1 = 0x53;
export const FORMAT_VERSION = 1;
/** Bytes of the header every stored value starts with: `M`, `S`, format version, transcoder kind. */
export const HEADER_LENGTH = 4;

/** The header's transcoder kind byte of the built-in transcoders (a custom transcoder picks another). */
export const TranscoderKind = {
  /** JsonTranscoder */
  json: 1,
  /** AvroTranscoder */
  avro: 2,
  /** EncryptingTranscoder */
  encrypted: 3,
} as const;

/** Not a session: `bak:<old id>` after a relocation, pointing at the new id (see non-sticky.ts). */
const MOVED_KIND = 0xff;

export function encodeMoved(newId: string): Buffer {
  const b = Buffer.allocUnsafe(HEADER_LENGTH + Buffer.byteLength(newId, 'utf8'));
  writeHeader(b, MOVED_KIND);
  b.write(newId, HEADER_LENGTH, 'utf8');
  return b;
}

/**
 * Not a transcoder's bytes: a session whose key holds a hash of its id (keys.ts) carries the id in front of the
 * transcoder's bytes (`<header><u16 length><id, UTF-8><bytes>`), so a listing of keys can still name it.
 */
const WITH_ID_KIND = 0xfe;

export function withId(id: string, bytes: Buffer): Buffer {
  const len = Buffer.byteLength(id, 'utf8');
  const b = Buffer.allocUnsafe(HEADER_LENGTH + 2 + len + bytes.length);
  writeHeader(b, WITH_ID_KIND);
  b.writeUInt16BE(len, HEADER_LENGTH);
  b.write(id, HEADER_LENGTH + 2, 'utf8');
  bytes.copy(b, HEADER_LENGTH + 2 + len);
  return b;
}

/** The id a session item carries (withId), else undefined (its key names it). */
export function idInItem(item: Buffer): string | undefined {
  if (!hasHeader(item, WITH_ID_KIND) || item.length < HEADER_LENGTH + 2) return undefined;
  return item.toString('utf8', HEADER_LENGTH + 2, HEADER_LENGTH + 2 + item.readUInt16BE(HEADER_LENGTH));
}

/** The transcoder's bytes in a session item (without the id withId put in front). */
export function transcodedBytes(item: Buffer): Buffer {
  return hasHeader(item, WITH_ID_KIND) && item.length >= HEADER_LENGTH + 2
    ? item.subarray(HEADER_LENGTH + 2 + item.readUInt16BE(HEADER_LENGTH))
    : item;
}

/** The new id when `bytes` is a relocation marker, else undefined. */
export function movedTo(bytes: Buffer): string | undefined {
  return hasHeader(bytes, MOVED_KIND) ? bytes.toString('utf8', HEADER_LENGTH) : undefined;
}

/** Writes the 4-byte header (`MS`, format version, `kind`) at the start of `target`: for custom transcoders. */
export function writeHeader(target: Buffer, kind: number): void {
  target[0] = MAGIC0;
  target[1] = MAGIC1;
  target[2] = FORMAT_VERSION;
  target[3] = kind;
}

/** Whether `bytes` start with the header of transcoder `kind` (a custom transcoder's decode checks it first). */
export function hasHeader(bytes: Buffer, kind: number): boolean {
  return (
    bytes.length >= HEADER_LENGTH
    && bytes[0] === MAGIC0
    && bytes[1] === MAGIC1
    && bytes[2] === FORMAT_VERSION
    && bytes[3] === kind
  );
}

/** Written by express-msm (any transcoder, format version, or a marker). Anything else belongs to someone else. */
export function isMsmItem(bytes: Buffer): boolean {
  return bytes.length >= HEADER_LENGTH && bytes[0] === MAGIC0 && bytes[1] === MAGIC1;
}

export function isStoredSession(v: unknown): v is StoredSession {
  const cookie = (v as StoredSession | null)?.cookie;
  return (
    typeof v === 'object'
    && v !== null
    && !Array.isArray(v)
    && (cookie === undefined || (typeof cookie === 'object' && cookie !== null))
  );
}
