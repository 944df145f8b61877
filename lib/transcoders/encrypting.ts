// Encryption at rest: AES-256-GCM (node:crypto) around any transcoder. Writes with the first key, reads with any
// listed key (rotation). The ciphertext is bound to the session's random id part (additional data): bytes copied
// under another session's key do not decrypt. See docs/encryption.md.
//
//   'M' 'S' 1 3 | key id length (1) | key id (ASCII) | IV (12) | tag (16) | AES-256-GCM(inner transcoder's bytes)
//   additional data: everything before the IV, then the random id part
//
// The IV is synthetic (SIV construction): HMAC-SHA256 of the additional data and the plaintext under a key of its
// own. Equal sessions then encrypt to equal bytes, which the store needs to skip rewriting unchanged sessions; an IV
// repeats only for the same plaintext of the same session under the same key, so GCM's nonce rule holds.
import { createCipheriv, createDecipheriv, createHmac, hkdfSync } from 'crypto';
import { JsonTranscoder } from './json';
import {
  HEADER_LENGTH,
  type StoredSession,
  type Transcoder,
  type TranscoderContext,
  TranscoderKind,
  hasHeader,
  writeHeader,
} from './transcoder';
import { ConfigError, TranscoderError } from '../core/errors';

/** One key of EncryptingTranscoder's `keys`. */
export interface EncryptionKey {
  /** 1-64 of [A-Za-z0-9_.-]; stored with every value, so a reader knows which key wrote it. */
  id: string;
  /** 32 bytes: a Buffer, or base64 (e.g. `openssl rand -base64 32`). */
  key: Buffer | Uint8Array | string;
}

/** Options of `new EncryptingTranscoder()`. */
export interface EncryptingTranscoderOptions {
  /** Writes with the first, reads with any. At least one; ids unique. */
  keys: EncryptionKey[];
  /** What is encrypted: the bytes of this transcoder. JSON by default. */
  transcoder?: Transcoder | undefined;
}

const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;

interface DerivedKey {
  id: string;
  /** Header + key id length + key id: the start of every value written with this key. */
  prefix: Buffer;
  cipherKey: Buffer;
  ivKey: Buffer;
}

function keyBytes(k: EncryptionKey, i: number): Buffer {
  const what = `EncryptingTranscoder keys[${i}] (${JSON.stringify(k?.id)})`;
  let b: Buffer | undefined;
  if (Buffer.isBuffer(k.key) || k.key instanceof Uint8Array) b = Buffer.from(k.key);
  else if (typeof k.key === 'string') {
    b = Buffer.from(k.key, 'base64');
    // Buffer.from skips characters that are not base64: re-encode to tell a real base64 string from anything else.
    if (b.toString('base64').replace(/=+$/, '') !== k.key.replace(/=+$/, ''))
      throw ConfigError.saying(`express-msm: ${what}: key is not base64`);
  }
  if (b?.length !== 32)
    throw ConfigError.saying(
      `express-msm: ${what}: key must be 32 bytes (a Buffer or base64), got ${b ? b.length + ' bytes' : typeof k.key}`,
    );
  return b;
}

function derive(k: EncryptionKey, i: number): DerivedKey {
  if (!k || typeof k !== 'object' || typeof k.id !== 'string' || !KEY_ID.test(k.id)) {
    throw ConfigError.saying(`express-msm: EncryptingTranscoder keys[${i}]: id must be 1-64 of [A-Za-z0-9_.-]`);
  }
  const secret = keyBytes(k, i);
  // Two independent keys from one secret: one for AES-GCM, one for the synthetic IV.
  const sub = (info: string) => Buffer.from(hkdfSync('sha256', secret, Buffer.alloc(0), info, 32));
  const prefix = Buffer.allocUnsafe(HEADER_LENGTH + 1 + k.id.length);
  writeHeader(prefix, TranscoderKind.encrypted);
  prefix[HEADER_LENGTH] = k.id.length;
  prefix.write(k.id, HEADER_LENGTH + 1, 'latin1');
  return { id: k.id, prefix, cipherKey: sub('express-msm aes-256-gcm'), ivKey: sub('express-msm synthetic iv') };
}

function additionalData(prefix: Buffer, context: TranscoderContext): Buffer {
  return Buffer.concat([prefix, Buffer.from(context.random, 'utf8')]);
}

/**
 * Wraps a transcoder with AES-256-GCM: writes with the first key, reads with any listed; the bytes are bound to the
 * session id's random part. See docs/encryption.md.
 */
export class EncryptingTranscoder implements Transcoder {
  readonly name: string;
  /** The transcoder whose bytes are encrypted. */
  readonly inner: Transcoder;
  private readonly writer: DerivedKey;
  private readonly readers = new Map<string, DerivedKey>();

  constructor(options: EncryptingTranscoderOptions) {
    if (!options || !Array.isArray(options.keys) || options.keys.length === 0) {
      throw ConfigError.saying(
        'express-msm: EncryptingTranscoder needs keys: [{ id, key }] (at least one; the first one writes)',
      );
    }
    options.keys.forEach((k, i) => {
      const d = derive(k, i);
      if (this.readers.has(d.id))
        throw ConfigError.saying(`express-msm: EncryptingTranscoder: duplicate key id ${JSON.stringify(d.id)}`);
      this.readers.set(d.id, d);
    });
    this.writer = this.readers.get(options.keys[0].id)!;
    this.inner = options.transcoder ?? new JsonTranscoder();
    if (typeof this.inner.encode !== 'function' || typeof this.inner.decode !== 'function') {
      throw ConfigError.saying(
        'express-msm: EncryptingTranscoder: transcoder must have encode(session) and decode(bytes)',
      );
    }
    this.name = `encrypted-${this.inner.name}`;
  }

  /** The id of the key new values are written with. */
  get writeKeyId(): string {
    return this.writer.id;
  }

  encode(session: StoredSession, context?: TranscoderContext): Buffer {
    if (!context || typeof context.random !== 'string') {
      throw new TranscoderError(
        'express-msm: EncryptingTranscoder.encode needs the session (context): the ciphertext is bound to it',
      );
    }
    const k = this.writer;
    const plain = this.inner.encode(session, context);
    const aad = additionalData(k.prefix, context);
    const mac = createHmac('sha256', k.ivKey);
    const aadLength = Buffer.allocUnsafe(4);
    aadLength.writeUInt32BE(aad.length);
    const iv = mac.update(aadLength).update(aad).update(plain).digest().subarray(0, IV_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', k.cipherKey, iv, { authTagLength: TAG_LENGTH });
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(plain), cipher.final()]);
    return Buffer.concat([k.prefix, iv, cipher.getAuthTag(), body]);
  }

  /** null without a context, for a key that is not listed, for another session's bytes, and for any tampering. */
  decode(bytes: Buffer, context?: TranscoderContext): StoredSession | null {
    if (
      !context
      || typeof context.random !== 'string'
      || !hasHeader(bytes, TranscoderKind.encrypted)
      || bytes.length <= HEADER_LENGTH
    )
      return null;
    const idEnd = HEADER_LENGTH + 1 + bytes[HEADER_LENGTH];
    if (bytes.length < idEnd + IV_LENGTH + TAG_LENGTH) return null;
    const k = this.readers.get(bytes.toString('latin1', HEADER_LENGTH + 1, idEnd));
    if (!k) return null;
    try {
      const decipher = createDecipheriv('aes-256-gcm', k.cipherKey, bytes.subarray(idEnd, idEnd + IV_LENGTH), {
        authTagLength: TAG_LENGTH,
      });
      decipher.setAAD(additionalData(k.prefix, context));
      decipher.setAuthTag(bytes.subarray(idEnd + IV_LENGTH, idEnd + IV_LENGTH + TAG_LENGTH));
      const plain = Buffer.concat([decipher.update(bytes.subarray(idEnd + IV_LENGTH + TAG_LENGTH)), decipher.final()]);
      return this.inner.decode(plain, context);
    } catch {
      return null;
    }
  }
}
