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

/** The id in a key of the form `<prefix><id>` or `bak:<prefix><id>` (validate it with SessionIdFormat.parse). */
export function idInKey(keys: KeyFormat, key: string, kind: 'session' | 'backup'): string | undefined {
  const head = kind === 'backup' ? 'bak:' + keys.prefix : keys.prefix;
  return key.startsWith(head) ? key.slice(head.length) : undefined;
}

/** Memcached text/binary keys: 1-250 bytes, no whitespace or control characters. Last line of defence. */
export function isValidMemcachedKey(key: string): boolean {
  return key.length > 0 && Buffer.byteLength(key) <= MEMCACHED_MAX_KEY_LENGTH && /^[\x21-\x7e]+$/.test(key);
}
