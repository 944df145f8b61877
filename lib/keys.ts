// Key names exactly as Java msm builds them (SessionIdFormat / StorageKeyFormat). Knows no bytes, no HTTP.
export const MEMCACHED_MAX_KEY_LENGTH = 250;

export class KeyFormat {
  /** Longest session id for which every derived key (the longest is the backup validity key) fits 250 bytes. */
  readonly maxIdLength: number;

  constructor(readonly prefix: string) {
    this.maxIdLength = MEMCACHED_MAX_KEY_LENGTH - this.backupValidity('').length;
  }

  /** msm StorageKeyFormat.format: `<prefix><id>`. */
  session(id: string): string {
    return this.prefix + id;
  }
  validity(id: string): string {
    return 'validity:' + this.prefix + id;
  }
  backup(id: string): string {
    return 'bak:' + this.prefix + id;
  }
  /** msm: `"bak:" + fmt("validity:" + fmt(id))`: with prefix `x_` that is `bak:x_validity:x_<id>`. */
  backupValidity(id: string): string {
    return 'bak:' + this.prefix + 'validity:' + this.prefix + id;
  }
  /** Per-user index item (user-index.ts): `idx:<prefix><sha256-hex of the indexed value>`. */
  index(hash: string): string {
    return 'idx:' + this.prefix + hash;
  }
  lock(id: string): string {
    return 'lock:' + this.prefix + id;
  }
  /** msm probes `fmt("ping-" + nodeId)` with a get; a miss means the node answers. */
  ping(nodeId: string): string {
    return this.prefix + 'ping-' + nodeId;
  }
}

/** The kinds of items a session has (see KeyFormat), as listing finds them. */
export type KeyKind = 'session' | 'validity' | 'backup' | 'backupValidity' | 'lock';

/**
 * The one key -> session id step (listing, repair, clear): the kind of item and the id it belongs to, or undefined
 * for a key this store never builds that way (other prefix, another application's key). Validate the id with
 * SessionIdFormat.parse. Keys hold the id as is; if keys ever escape or hash ids, the inverse belongs here.
 */
export function idInKey(keys: KeyFormat, key: string): { kind: KeyKind; id: string } | undefined {
  const p = keys.prefix;
  // Ids never contain ':', so with an empty prefix `bak:x` can only be a backup key.
  for (const [kind, head] of [['backupValidity', 'bak:' + p + 'validity:' + p], ['backup', 'bak:' + p], ['validity', 'validity:' + p],
    ['lock', 'lock:' + p], ['session', p]] as const) {
    if (key.startsWith(head) && key.length > head.length) return { kind, id: key.slice(head.length) };
  }
  return undefined;
}

/** Memcached text/binary keys: 1-250 bytes, no whitespace or control characters. Last line of defence. */
export function isValidMemcachedKey(key: string): boolean {
  return key.length > 0 && Buffer.byteLength(key) <= MEMCACHED_MAX_KEY_LENGTH && /^[\x21-\x7e]+$/.test(key);
}
