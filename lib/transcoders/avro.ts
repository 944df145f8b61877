// Avro transcoder (avsc): the app declares its session attributes as a named Avro record; values are
//   header (4 bytes, kind avro) | fingerprint of the writer schema (8 bytes, CRC-64-AVRO, little-endian) | body
// where body = Cookie record (fixed, below) followed by the app's attributes record (i.e. the Avro encoding of a
// record { cookie: Cookie, attributes: <schema> }). Values written with any of `previousSchemas` are read with
// Avro reader/writer resolution into the current schema; unknown fingerprints, other headers and corrupt bytes
// decode to null (never a throw). Every avsc type and resolver is built once, in the constructor.
import * as avro from 'avsc';
import {
  HEADER_LENGTH,
  type StoredCookie,
  type StoredSession,
  type Transcoder,
  TranscoderKind,
  hasHeader,
  writeHeader,
} from './transcoder';
import { ConfigError, TranscoderError } from '../core/errors';

/** An Avro schema as a plain object (JSON), or an avsc Type. Checked at construction. */
export type AvroSchema = avro.Schema | Record<string, unknown>;
type LogicalTypeClass = new (schema: any, opts?: any) => avro.types.LogicalType;

/** Options of `new AvroTranscoder()`. */
export interface AvroTranscoderOptions {
  /** The app's session attributes: a named Avro record schema (or an avsc record Type). No field may be named `cookie`. */
  schema: AvroSchema;
  /** Schemas of earlier deploys: values they wrote are still read (resolved into `schema`). Order does not matter. */
  previousSchemas?: AvroSchema[] | undefined;
  /**
   * Extra avsc logical types by name, merged over the built-in `timestamp-millis` (long <-> Date).
   * Applied to `schema` and every previous schema.
   */
  logicalTypes?: Record<string, LogicalTypeClass> | undefined;
}

/** The fixed part: express-session's cookie (Cookie.toJSON's fields). Changing it requires a new FORMAT_VERSION. */
const COOKIE_SCHEMA = {
  type: 'record',
  name: 'express_msm.Cookie',
  fields: [
    // Wrapped union (avsc 'auto'): {long: n} for integers (small varint), {double: n} otherwise; both exact.
    { name: 'originalMaxAge', type: ['null', 'long', 'double'] },
    { name: 'expires', type: ['null', 'string'] },
    { name: 'secure', type: ['null', 'boolean'] },
    { name: 'httpOnly', type: ['null', 'boolean'] },
    { name: 'domain', type: ['null', 'string'] },
    { name: 'path', type: ['null', 'string'] },
    // express-session accepts true/false or 'lax'/'strict'/'none': booleans travel as "true"/"false".
    { name: 'sameSite', type: ['null', 'string'] },
    { name: 'partitioned', type: ['null', 'boolean'] },
    { name: 'priority', type: ['null', 'string'] },
  ],
} as const;

interface AvroCookie {
  originalMaxAge: { long: number } | { double: number } | null;
  expires: string | null;
  secure: boolean | null;
  httpOnly: boolean | null;
  domain: string | null;
  path: string | null;
  sameSite: string | null;
  partitioned: boolean | null;
  priority: string | null;
}

/**
 * Avro's standard `timestamp-millis` on a long: encodes a Date (or epoch milliseconds, or an ISO-8601 string),
 * decodes to a Date. Exact for every Date from about 140,000 BC on (epoch ms >= MIN_AVRO_LONG = -2^52).
 */
export class TimestampMillisType extends avro.types.LogicalType {
  protected _fromValue(val: number): Date {
    return new Date(val);
  }
  protected _toValue(v: unknown): number | undefined {
    let t: number;
    if (v instanceof Date) t = v.getTime();
    else if (typeof v === 'number') t = v;
    else if (typeof v === 'string') t = Date.parse(v);
    else return undefined;
    return Number.isInteger(t) && t <= MAX_AVRO_LONG && t >= MIN_AVRO_LONG ? t : undefined;
  }
  protected _resolve(type: avro.Type): ((v: unknown) => Date) | undefined {
    if (avro.Type.isType(type, 'long', 'int', 'logical:timestamp-millis'))
      return (v) => (v instanceof Date ? v : new Date(v as number));
    return undefined;
  }
}

interface Reader {
  lo: number;
  hi: number;
  /** undefined: written with the current schema. */
  resolver: avro.Resolver | undefined;
}

const FINGERPRINT_LENGTH = 8;
const PREFIX_LENGTH = HEADER_LENGTH + FINGERPRINT_LENGTH;
const MAX_RETAINED_SCRATCH = 1024 * 1024;
/** avsc's long range (it refuses 2^53 - 1 and 2^53 as "potential precision loss"). */
export const MAX_AVRO_LONG = 9007199254740990;
/**
 * avsc 5.7.9 writes longs below -2^52 wrongly without an error (its zigzag step, -2n - 1, is computed in floating
 * point: -4503599627370497 reads back as -4503599627370498). Longs are refused below this bound instead.
 */
export const MIN_AVRO_LONG = -4503599627370496;

/** avsc's long, refusing (instead of silently corrupting) values below MIN_AVRO_LONG. */
class CheckedLongType extends (avro.types.LongType as unknown as new () => any) {
  _write(tap: { writeLong(n: number): void }, v: unknown): void {
    if (typeof v !== 'number' || v % 1 !== 0 || v < MIN_AVRO_LONG || v > MAX_AVRO_LONG) {
      throw new Error(`invalid "long": ${v} (avsc encodes integers in [${MIN_AVRO_LONG}, ${MAX_AVRO_LONG}] exactly)`);
    }
    tap.writeLong(v);
  }
  _check(v: unknown, flags: unknown, hook?: (v: unknown, t: unknown) => void, path?: unknown): boolean {
    if (typeof v === 'number' && v < MIN_AVRO_LONG) {
      if (hook) hook(v, this);
      return false;
    }
    return super._check(v, flags, hook, path);
  }
}

/** Plain `long` (not the underlying type of a logical type) becomes a CheckedLongType. */
function longHook(schema: unknown): avro.Type | undefined {
  if (
    schema === 'long'
    || (typeof schema === 'object'
      && schema !== null
      && (schema as any).type === 'long'
      && !(schema as any).logicalType)
  ) {
    return new CheckedLongType() as unknown as avro.Type;
  }
  return undefined;
}

/**
 * Sessions as Avro binary: the cookie in a fixed record, the app's attributes in the schema it gives. Smaller than
 * JSON; earlier schemas stay readable (`previousSchemas`). See docs/transcoders.md.
 */
export class AvroTranscoder implements Transcoder {
  readonly name = 'avro';
  /** The current (reader and writer) attributes type. */
  readonly type: avro.Type;
  /** CRC-64-AVRO of the current schema's canonical form, as stored (little-endian hex). */
  readonly fingerprint: string;
  private readonly cookieType: avro.Type;
  private readonly fieldNames: string[];
  private readonly fields: Array<{ name: string; type: avro.Type; defaultBytes: Buffer | undefined }>;
  private readonly declared: Set<string>;
  private readonly readers: Reader[] = [];
  private readonly current: Reader;
  private readonly checkNested: Array<[string, UndeclaredCheck]>;
  private scratch = Buffer.allocUnsafe(16 * 1024);
  // Reused on every encode (encode is synchronous): no per-call cookie allocations.
  private readonly cookie: AvroCookie = {
    originalMaxAge: null,
    expires: null,
    secure: null,
    httpOnly: null,
    domain: null,
    path: null,
    sameSite: null,
    partitioned: null,
    priority: null,
  };
  private readonly maxAgeLong = { long: 0 };
  private readonly maxAgeDouble = { double: 0 };

  constructor(options: AvroTranscoderOptions) {
    if (!options || options.schema === undefined)
      throw ConfigError.saying(
        'express-msm: AvroTranscoder needs { schema }: a named Avro record of the session attributes',
      );
    const logicalTypes = { 'timestamp-millis': TimestampMillisType, ...(options.logicalTypes ?? {}) };
    const parse = (schema: AvroSchema, what: string): avro.Type => {
      let t: avro.Type;
      try {
        t = avro.Type.isType(schema)
          ? (schema as avro.Type)
          : avro.Type.forSchema(schema as avro.Schema, { logicalTypes, omitRecordMethods: true, typeHook: longHook });
      } catch (e) {
        throw ConfigError.saying(
          `express-msm: AvroTranscoder ${what} is not a valid Avro schema: ${(e as Error).message}`,
          { cause: e },
        );
      }
      if (!avro.Type.isType(t, 'record') || !t.name)
        throw ConfigError.saying(
          `express-msm: AvroTranscoder ${what} must be a named Avro record (type: 'record', name, fields)`,
        );
      if (fieldsOf(t).some((f) => f.name === 'cookie'))
        throw ConfigError.saying(
          `express-msm: AvroTranscoder ${what} must not declare a field named "cookie" (the cookie travels in the fixed part)`,
        );
      return t;
    };
    this.type = parse(options.schema, 'schema');
    this.cookieType = avro.Type.forSchema(COOKIE_SCHEMA as unknown as avro.Schema, { omitRecordMethods: true });
    this.fieldNames = fieldsOf(this.type).map((f) => f.name);
    this.fields = fieldsOf(this.type).map((f) => {
      const d = (f as unknown as { defaultValue(): unknown }).defaultValue();
      return { name: f.name, type: f.type, defaultBytes: d === undefined ? undefined : f.type.toBuffer(d) };
    });
    this.declared = new Set(this.fieldNames);
    this.checkNested = [];
    for (const f of fieldsOf(this.type)) {
      const c = undeclaredCheck(f.type, new Set());
      if (c) this.checkNested.push([f.name, c]);
    }

    const fp = fingerprint64(JSON.stringify(this.type.schema()));
    this.fingerprint = fp.toString('hex');
    this.current = { lo: fp.readUInt32LE(0), hi: fp.readUInt32LE(4), resolver: undefined };
    this.readers.push(this.current);
    (options.previousSchemas ?? []).forEach((s, i) => {
      const writer = parse(s, `previousSchemas[${i}]`);
      const wfp = fingerprint64(JSON.stringify(writer.schema()));
      const lo = wfp.readUInt32LE(0);
      const hi = wfp.readUInt32LE(4);
      if (this.readers.some((r) => r.lo === lo && r.hi === hi)) return; // same canonical schema: same bytes
      let resolver: avro.Resolver;
      try {
        resolver = this.type.createResolver(writer);
      } catch (e) {
        throw ConfigError.saying(
          `express-msm: AvroTranscoder cannot read values written with previousSchemas[${i}] (${writer.name}) as the current schema (${this.type.name}): ${(e as Error).message}. Fields added since must have defaults.`,
          { cause: e },
        );
      }
      this.readers.push({ lo, hi, resolver });
    });
  }

  encode(session: StoredSession): Buffer {
    // Undeclared attributes would be dropped silently by avsc: refuse them (sessionAttributeFilter can exclude them).
    for (const k in session) {
      if (k !== 'cookie' && !this.declared.has(k) && Object.hasOwn(session, k) && session[k] !== undefined) {
        throw new TranscoderError(
          `express-msm: session attribute "${k}" is not in the Avro schema ${this.type.name}; add it to the schema or exclude it with sessionAttributeFilter`,
        );
      }
    }
    for (let i = 0; i < this.checkNested.length; i++) {
      const [name, check] = this.checkNested[i];
      const v = session[name];
      if (v !== undefined && v !== null) {
        const bad = check(v, name);
        if (bad)
          throw new TranscoderError(
            `express-msm: session attribute "${bad}" is not in the Avro schema ${this.type.name}; it would be lost`,
          );
      }
    }
    this.fillCookie(session.cookie);
    let buf = this.scratch;
    for (;;) {
      let pos: number;
      try {
        pos = this.write(session, buf);
      } catch (e) {
        throw this.describe(session, e as Error);
      }
      if (pos >= 0) {
        if (buf !== this.scratch) return buf.subarray(0, pos); // one-off large buffer: no copy
        const out = Buffer.allocUnsafe(pos);
        buf.copy(out, 0, 0, pos);
        return out;
      }
      // Too small: avsc returns minus the bytes missing for the failing part; grow and retry.
      buf = Buffer.allocUnsafe(Math.max(buf.length * 2, buf.length - pos + PREFIX_LENGTH));
      if (buf.length <= MAX_RETAINED_SCRATCH) this.scratch = buf;
    }
  }

  decode(bytes: Buffer): StoredSession | null {
    if (bytes.length < PREFIX_LENGTH || !hasHeader(bytes, TranscoderKind.avro)) return null;
    const lo = bytes.readUInt32LE(HEADER_LENGTH);
    const hi = bytes.readUInt32LE(HEADER_LENGTH + 4);
    let reader: Reader | undefined;
    for (let i = 0; i < this.readers.length; i++) {
      const r = this.readers[i];
      if (r.lo === lo && r.hi === hi) {
        reader = r;
        break;
      }
    }
    if (!reader) return null;
    try {
      const c = this.cookieType.decode(bytes, PREFIX_LENGTH);
      if (c.offset < 0) return null;
      const a = this.type.decode(bytes, c.offset, reader.resolver);
      if (a.offset !== bytes.length) return null; // truncated (-1) or trailing bytes
      const session: StoredSession = { cookie: toStoredCookie(c.value as AvroCookie) };
      const attrs = a.value as Record<string, unknown>;
      for (let i = 0; i < this.fieldNames.length; i++) {
        const k = this.fieldNames[i];
        const v = attrs[k];
        // Avro cannot tell "absent" from null: a null attribute comes back absent (== null either way).
        if (v !== null && v !== undefined) session[k] = v;
      }
      return session;
    } catch {
      return null;
    }
  }

  // --- internals ---

  /** header | fingerprint | cookie | attributes into buf; the end offset, or < 0 when buf is too small. */
  private write(session: StoredSession, buf: Buffer): number {
    writeHeader(buf, TranscoderKind.avro);
    buf.writeUInt32LE(this.current.lo, HEADER_LENGTH);
    buf.writeUInt32LE(this.current.hi, HEADER_LENGTH + 4);
    let pos = this.cookieType.encode(this.cookie, buf, PREFIX_LENGTH);
    // The attributes record field by field (same bytes as type.encode): a missing attribute with a default gets
    // the default's pre-encoded bytes (avsc would go through a latin1 string per default, a third of a small encode).
    const fields = this.fields;
    for (let i = 0; i < fields.length && pos >= 0; i++) {
      const f = fields[i];
      const v = session[f.name];
      if (v === undefined && f.defaultBytes !== undefined) {
        const d = f.defaultBytes;
        if (pos + d.length > buf.length) return buf.length - pos - d.length;
        for (let j = 0; j < d.length; j++) buf[pos + j] = d[j];
        pos += d.length;
      } else pos = f.type.encode(v, buf, pos);
    }
    return pos;
  }

  private fillCookie(src: StoredCookie | undefined): void {
    const c = this.cookie;
    const s: StoredCookie = src ?? { originalMaxAge: null };
    const oma = s.originalMaxAge;
    if (typeof oma === 'number') {
      if (Number.isInteger(oma) && oma <= MAX_AVRO_LONG && oma >= MIN_AVRO_LONG) {
        this.maxAgeLong.long = oma;
        c.originalMaxAge = this.maxAgeLong;
      } else {
        this.maxAgeDouble.double = oma;
        c.originalMaxAge = this.maxAgeDouble;
      }
    } else c.originalMaxAge = null;
    const exp = s.expires;
    c.expires = exp instanceof Date ? exp.toISOString() : typeof exp === 'string' ? exp : null;
    c.secure = typeof s.secure === 'boolean' ? s.secure : null;
    c.httpOnly = typeof s.httpOnly === 'boolean' ? s.httpOnly : null;
    c.domain = typeof s.domain === 'string' ? s.domain : null;
    c.path = typeof s.path === 'string' ? s.path : null;
    const ss = s.sameSite;
    c.sameSite = ss === true ? 'true' : ss === false ? 'false' : typeof ss === 'string' ? ss : null;
    c.partitioned = typeof s.partitioned === 'boolean' ? s.partitioned : null;
    c.priority = typeof s.priority === 'string' ? s.priority : null;
  }

  /** Slow path, only after a failed encode: find the offending attribute's path for the message. */
  private describe(session: StoredSession, cause: Error): Error {
    let where: string | undefined;
    let got: unknown;
    let expected: string | undefined;
    this.type.isValid(session, {
      errorHook: (path, val, type) => {
        if (where !== undefined) return;
        where = formatPath(path);
        got = val;
        expected = describeType(type);
      },
    });
    if (where === undefined)
      return new TranscoderError(
        `express-msm: session does not fit the Avro schema ${this.type.name}: ${cause.message}`,
        { cause },
      );
    let hint = '';
    if (got instanceof Date)
      hint = expected?.includes('timestamp-millis')
        ? ` (timestamp-millis holds Dates from ${new Date(MIN_AVRO_LONG).toISOString()} on)`
        : ` (use { type: 'long', logicalType: 'timestamp-millis' })`;
    return new TranscoderError(
      `express-msm: session attribute "${where}" does not fit the Avro schema ${this.type.name}: expected ${expected}, got ${preview(got)}${hint}`,
      { cause },
    );
  }
}

function toStoredCookie(c: AvroCookie): StoredCookie {
  const oma = c.originalMaxAge;
  const out: StoredCookie = { originalMaxAge: oma === null ? null : 'long' in oma ? oma.long : oma.double };
  if (c.expires !== null) out.expires = c.expires;
  if (c.secure !== null) out.secure = c.secure;
  if (c.httpOnly !== null) out.httpOnly = c.httpOnly;
  if (c.domain !== null) out.domain = c.domain;
  if (c.path !== null) out.path = c.path;
  if (c.sameSite !== null) out.sameSite = c.sameSite === 'true' ? true : c.sameSite === 'false' ? false : c.sameSite;
  if (c.partitioned !== null) out.partitioned = c.partitioned;
  if (c.priority !== null) out.priority = c.priority;
  return out;
}

interface FieldLike {
  name: string;
  type: avro.Type;
}

function fieldsOf(t: avro.Type): FieldLike[] {
  return (t as unknown as { fields: FieldLike[] }).fields;
}

/** Returns the path of the first undeclared record field under a value, or undefined. */
type UndeclaredCheck = (v: any, path: string) => string | undefined;

/**
 * Builds (once) a checker for record fields avsc would drop silently, for the parts of a type that contain
 * records. Types without nested records get no checker at all (no per-encode cost).
 */
function undeclaredCheck(t: avro.Type, visiting: Set<avro.Type>): UndeclaredCheck | undefined {
  if (visiting.has(t)) return (v, p) => lazy.get(t)?.(v, p); // recursive record: resolved after construction
  const name = t.typeName;
  if (name === 'record' || name === 'error') {
    visiting.add(t);
    const fields = fieldsOf(t);
    const declared = new Set(fields.map((f) => f.name));
    const nested: Array<[string, UndeclaredCheck]> = [];
    for (const f of fields) {
      const c = undeclaredCheck(f.type, visiting);
      if (c) nested.push([f.name, c]);
    }
    visiting.delete(t);
    const check: UndeclaredCheck = (v, p) => {
      if (typeof v !== 'object' || v === null) return undefined; // a type error: avsc reports it
      for (const k in v) {
        if (!declared.has(k) && Object.hasOwn(v, k) && v[k] !== undefined) return `${p}.${k}`;
      }
      for (let i = 0; i < nested.length; i++) {
        const [k, c] = nested[i];
        const x = v[k];
        if (x !== undefined && x !== null) {
          const bad = c(x, `${p}.${k}`);
          if (bad) return bad;
        }
      }
      return undefined;
    };
    lazy.set(t, check);
    return check;
  }
  if (name === 'array') {
    const c = undeclaredCheck((t as any).itemsType, visiting);
    if (!c) return undefined;
    return (v, p) => {
      if (!Array.isArray(v)) return undefined;
      for (let i = 0; i < v.length; i++) {
        const bad = v[i] === null || v[i] === undefined ? undefined : c(v[i], `${p}[${i}]`);
        if (bad) return bad;
      }
      return undefined;
    };
  }
  if (name === 'map') {
    const c = undeclaredCheck((t as any).valuesType, visiting);
    if (!c) return undefined;
    return (v, p) => {
      if (typeof v !== 'object' || v === null) return undefined;
      for (const k in v) {
        const x = v[k];
        const bad = x === null || x === undefined ? undefined : c(x, `${p}.${k}`);
        if (bad) return bad;
      }
      return undefined;
    };
  }
  if (name === 'union:unwrapped') {
    // At most one branch is a record/map (avsc wraps ambiguous unions): check objects against it.
    const branches: avro.Type[] = (t as any).types;
    const rec = branches.find((b) => b.typeName === 'record' || b.typeName === 'error' || b.typeName === 'map');
    const arr = branches.find((b) => b.typeName === 'array');
    const rc = rec && undeclaredCheck(rec, visiting);
    const ac = arr && undeclaredCheck(arr, visiting);
    if (!rc && !ac) return undefined;
    return (v, p) =>
      Array.isArray(v)
        ? ac?.(v, p)
        : typeof v === 'object' && v !== null && !Buffer.isBuffer(v)
          ? rc?.(v, p)
          : undefined;
  }
  if (name === 'union:wrapped') {
    const branches: avro.Type[] = (t as any).types;
    const checks = new Map<string, UndeclaredCheck>();
    for (const b of branches) {
      const c = undeclaredCheck(b, visiting);
      if (c) checks.set(b.branchName as string, c);
    }
    if (!checks.size) return undefined;
    return (v, p) => {
      if (typeof v !== 'object' || v === null) return undefined;
      for (const k in v) {
        const c = checks.get(k);
        if (c && v[k] !== null && v[k] !== undefined) return c(v[k], p);
      }
      return undefined;
    };
  }
  return undefined; // primitives, enums, fixed, logical types (their _toValue decides)
}
const lazy = new WeakMap<avro.Type, UndeclaredCheck>();

function formatPath(path: string[]): string {
  let s = '';
  for (const part of path) s += /^\d+$/.test(part) ? `[${part}]` : s ? `.${part}` : part;
  return s;
}

function describeType(t: avro.Type): string {
  try {
    return JSON.stringify(t.schema({ exportAttrs: true }));
  } catch {
    return t.typeName;
  }
}

function preview(v: unknown): string {
  if (v === undefined) return 'undefined (missing; give the field a default or make it nullable)';
  if (v instanceof Date) return `Date ${Number.isNaN(v.getTime()) ? 'Invalid Date' : v.toISOString()}`;
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 80 ? s.slice(0, 77) + '...' : s;
}

// CRC-64-AVRO (Rabin), the fingerprint of Avro's single-object encoding, over the schema's canonical form.
const EMPTY64 = 0xc15d213aa4d7a795n;
let FP_TABLE: BigUint64Array | undefined;

export function fingerprint64(canonical: string): Buffer {
  if (!FP_TABLE) {
    FP_TABLE = new BigUint64Array(256);
    for (let i = 0; i < 256; i++) {
      let fp = BigInt(i);
      for (let j = 0; j < 8; j++) fp = (fp >> 1n) ^ (fp & 1n ? EMPTY64 : 0n);
      FP_TABLE[i] = fp;
    }
  }
  let fp = EMPTY64;
  for (const b of Buffer.from(canonical, 'utf8')) fp = (fp >> 8n) ^ FP_TABLE[Number((fp ^ BigInt(b)) & 0xffn)];
  const out = Buffer.alloc(8);
  out.writeBigUInt64LE(fp);
  return out;
}
