// Key names exactly as Java msm builds them (SessionIdFormat / StorageKeyFormat). Knows no bytes, no HTTP.
// Every id reaches a key through idToKeyPart: msm-format ids as they are, any other id escaped or hashed.
import { createHash } from 'crypto';

export const MEMCACHED_MAX_KEY_LENGTH = 250;

/** msm's id shape (and express-session's uid-safe ids): kept verbatim in keys, exactly as Java msm does. */
const MSM_ID = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_]+)?$/;
/** Never in an msm-format id: marks an escaped id (`~` + percent-encoded UTF-8) and a hashed id (`#` + SHA-256). */
const ESCAPED = '~';
const HASHED = '#';
/** Bytes left verbatim by the escaping; every other byte becomes `%XX`. */
const VERBATIM = /[A-Za-z0-9_.-]/;

export class KeyFormat {
  /** Longest key part (mapped id) for which every derived key (the longest is the backup validity key) fits 250 bytes. */
  readonly maxIdLength: number;
  /** Key heads per kind, longest first (built once: every key build and every listed key uses them). */
  readonly heads: ReadonlyArray<readonly [KeyKind, string]>;
  private readonly backupValidityHead: string;
  /** The last id mapped and its key part: a request builds two to four keys of one id in a row. */
  private lastId: string | undefined;
  private lastPart = '';

  constructor(readonly prefix: string) {
    this.heads = heads(prefix);
    this.backupValidityHead = this.heads[0][1];
    this.maxIdLength = MEMCACHED_MAX_KEY_LENGTH - this.backupValidityHead.length;
  }

  /**
   * The id as it appears in keys. msm-format ids that fit: unchanged (msm's keys). Others: `~` + percent-encoding,
   * reversible with keyPartToId; when that is too long: `#` + SHA-256 (base64url), not reversible. Callers pass
   * only ids SessionIdFormat.parse accepted (well-formed UTF-16), so the mapping is injective.
   */
  idToKeyPart(id: string): string {
    if (id === this.lastId) return this.lastPart;
    const part = this.mapId(id);
    this.lastId = id;
    this.lastPart = part;
    return part;
  }

  private mapId(id: string): string {
    if (id.length <= this.maxIdLength && MSM_ID.test(id)) return id;
    let escaped = ESCAPED;
    for (const byte of Buffer.from(id, 'utf8')) {
      const c = String.fromCharCode(byte);
      escaped += byte < 0x80 && VERBATIM.test(c) ? c : '%' + byte.toString(16).toUpperCase().padStart(2, '0');
      if (escaped.length > this.maxIdLength)
        return HASHED + createHash('sha256').update(id, 'utf8').digest('base64url');
    }
    return escaped;
  }

  /** Whether a key part is a hashed id (`#` + SHA-256 base64url). */
  isHashedPart(part: string): boolean {
    return part.startsWith(HASHED) && /^#[A-Za-z0-9_-]{43}$/.test(part);
  }

  /** Whether the id's keys hold a hash of it (then its items carry the id: transcoder.ts withId). */
  isHashed(id: string): boolean {
    return this.idToKeyPart(id).startsWith(HASHED);
  }

  /** The id a key part stands for; undefined for a hashed id (the key does not hold it) or a malformed part. */
  keyPartToId(part: string): string | undefined {
    if (part.startsWith(HASHED)) return undefined;
    if (!part.startsWith(ESCAPED)) return MSM_ID.test(part) ? part : undefined;
    try {
      const id = decodeURIComponent(part.slice(1));
      return this.idToKeyPart(id) === part ? id : undefined;
    } catch {
      return undefined;
    }
  }

  /** msm StorageKeyFormat.format: `<prefix><id>`. */
  session(id: string): string {
    return this.prefix + this.idToKeyPart(id);
  }
  validity(id: string): string {
    return 'validity:' + this.prefix + this.idToKeyPart(id);
  }
  backup(id: string): string {
    return 'bak:' + this.prefix + this.idToKeyPart(id);
  }
  /** msm: `"bak:" + fmt("validity:" + fmt(id))`: with prefix `x_` that is `bak:x_validity:x_<id>`. */
  backupValidity(id: string): string {
    return this.backupValidityHead + this.idToKeyPart(id);
  }
  /** Per-user index item (user-index.ts): `idx:<prefix><sha256-hex of the indexed value>`. */
  index(hash: string): string {
    return 'idx:' + this.prefix + hash;
  }
  lock(id: string): string {
    return 'lock:' + this.prefix + this.idToKeyPart(id);
  }
  /** msm probes `fmt("ping-" + nodeId)` with a get; a miss means the node answers. */
  ping(nodeId: string): string {
    return this.prefix + 'ping-' + nodeId;
  }
}

/** The kinds of items a session has (see KeyFormat), as listing finds them. */
export type KeyKind = 'session' | 'validity' | 'backup' | 'backupValidity' | 'lock';

/** Key heads per kind, longest first: ids never contain ':', so with an empty prefix `bak:x` is only a backup key. */
function heads(p: string): ReadonlyArray<readonly [KeyKind, string]> {
  return [
    ['backupValidity', 'bak:' + p + 'validity:' + p],
    ['backup', 'bak:' + p],
    ['validity', 'validity:' + p],
    ['lock', 'lock:' + p],
    ['session', p],
  ];
}

export interface KeyItem {
  kind: KeyKind;
  /** The mapped id as it stands in the key (shared by all the items of one session). */
  part: string;
  /** The session id; undefined for a hashed id (`#…`), whose session item names it (idInItem). */
  id: string | undefined;
}

/**
 * The one key -> session id step (listing, repair, clear), or undefined for a key this store never builds (other
 * prefix, another application's key). Validate the id with SessionIdFormat.parse.
 */
export function idInKey(keys: KeyFormat, key: string): KeyItem | undefined {
  for (const [kind, head] of keys.heads) {
    if (!key.startsWith(head) || key.length === head.length) continue;
    const part = key.slice(head.length);
    if (keys.isHashedPart(part)) return { kind, part, id: undefined };
    const id = keys.keyPartToId(part);
    return id === undefined ? undefined : { kind, part, id };
  }
  return undefined;
}

/** idInKey for the keys of a walk: the probe markers of `nodeIds` (`<prefix>ping-<id>`, shaped like session keys) are none. */
export function itemOfKey(keys: KeyFormat, nodeIds: readonly string[]): (key: string) => KeyItem | undefined {
  const pings = new Set(nodeIds.map((id) => keys.ping(id)));
  return (key) => (pings.has(key) ? undefined : idInKey(keys, key));
}

/** The key of another item of the session whose key part is `part` (a hashed id's validity -> its session item). */
export function keyOfPart(keys: KeyFormat, kind: KeyKind, part: string): string {
  return keys.heads.find(([k]) => k === kind)![1] + part;
}

/** Printable ASCII: a key's length in characters is then its length in bytes. */
const KEY_CHARS = /^[\x21-\x7e]+$/;

/** Memcached text/binary keys: 1-250 bytes, no whitespace or control characters. Last line of defence. */
export function isValidMemcachedKey(key: string): boolean {
  return key.length > 0 && key.length <= MEMCACHED_MAX_KEY_LENGTH && KEY_CHARS.test(key);
}
