// What a mode (non-sticky, sticky) is given and must provide. The store speaks express-session; a mode speaks nodes.
import type { ResolvedConfig } from './config';
import type { KeyFormat } from './keys';
import type { Logger } from './logger';
import type { NodeSet } from './nodes';
import type { SessionId, SessionIdFormat } from './session-id';
import type { Statistics } from './stats';
import type { StoredCookie, StoredSession, Transcoder } from './transcoders/transcoder';
import type { Validity } from './validity';
import type { BackupRunner } from './backup';

/** What a load remembers about the session, carried on the session object (non-enumerable) until set/touch. */
export interface LoadedMeta {
  /** The id the bytes were loaded under (after relocation or takeover: the new id). */
  id: string;
  /** Encoded bytes as loaded or last written: equal bytes at save mean "unchanged". */
  bytes: Buffer;
  validity?: Validity;
  /** Sticky: ms of the last save or touch of the local copy (non-sticky: validity.thisAccessedTime). */
  accessedAt?: number;
  /** Set when the load moved the session to a new id (relocation or route takeover): the response must carry it. */
  newId?: string;
  /** Non-sticky: the load found the backup older or missing; the next save or touch rewrites it. */
  backupStale?: boolean;
  /** The cookie as loaded (store.ts: touch saves when it changed; originalMaxAge drift is undone). */
  cookie?: StoredCookie;
  /** Non-sticky: the node whose backup the load compared and found current. Only that copy may just be touched. */
  backupNode?: string;
}

export interface LoadResult {
  session: StoredSession;
  meta: LoadedMeta;
}

export interface ModeContext {
  cfg: ResolvedConfig;
  nodes: NodeSet;
  keys: KeyFormat;
  ids: SessionIdFormat;
  transcoder: Transcoder;
  stats: Statistics;
  logger: Logger;
  backups: BackupRunner;
  /** Remembers old id -> new id so concurrent requests with the old cookie follow the move. */
  recordIdChange(oldId: string, newId: string): void;
}

export interface SessionMode {
  /** Id for a new session (store.genid). */
  newId(): string;
  load(sid: SessionId): Promise<LoadResult | null>;
  /** `bytes` = transcoder.encode(stored); maxInactive in s (> 0). */
  save(sid: SessionId, stored: StoredSession, bytes: Buffer, maxInactive: number, meta: LoadedMeta | undefined): Promise<void>;
  /** `storedOf` builds the plain session only when the mode needs bytes it does not have (no LoadedMeta). */
  touch(sid: SessionId, storedOf: () => StoredSession, maxInactive: number, meta: LoadedMeta | undefined): Promise<void>;
  destroy(sid: SessionId): Promise<void>;
  close(): Promise<void>;
  /** Resolves when background work (repairs) is done. */
  idle?(): Promise<void>;
}

/** Equal bytes: the session was not modified since it was loaded or last written. */
export function unchanged(meta: LoadedMeta | undefined, id: string, bytes: Buffer): boolean {
  return meta !== undefined && meta.id === id && meta.bytes.length === bytes.length && meta.bytes.equals(bytes);
}
