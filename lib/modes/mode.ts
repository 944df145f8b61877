// What a mode (non-sticky, sticky) is given and must provide. The store speaks express-session; a mode speaks nodes.
import type { KeyFormat } from '../memcached/keys';
import type { Logger } from '../core/logger';
import type { NodeSet } from '../memcached/nodes';
import type { SessionId, SessionIdFormat } from '../memcached/session-id';
import type { Statistics } from '../core/stats';
import type { StoredSession, Transcoder } from '../transcoders/transcoder';
import { transcodedBytes, withId } from '../transcoders/transcoder';
import type { Validity } from '../memcached/validity';
import type { BackupRunner } from './backup';
import type { IdMoves, SessionRecord } from './session-record';

export interface LoadResult {
  session: StoredSession;
  record: SessionRecord;
}

/** The options the modes read (the store's resolved options; node changes update them in place). */
export interface ModeConfig {
  /** Sticky: this instance's route (msm's jvmRoute). */
  route?: string;
  localMaxSessions: number;
  localMaxBytes: number;
  /** Session ids name their node (node ids in memcachedNodes). */
  encodeNodeId: boolean;
  /** s */
  defaultMaxInactiveInterval: number;
  /** Non-sticky: backup copies besides the primary; sticky: copies in memcached. */
  backupCount: number;
  /** ms: a node marked down is re-replicated when it is still down a little after this (repair.ts). */
  nodeAvailabilityCacheTTL: number;
}

export interface ModeContext {
  cfg: ModeConfig;
  nodes: NodeSet;
  keys: KeyFormat;
  idFormat: SessionIdFormat;
  transcoder: Transcoder;
  stats: Statistics;
  logger: Logger;
  backups: BackupRunner;
  /** Where ids moved (concurrent requests with an old cookie follow), and whether cookies follow moves at all. */
  moves: IdMoves;
}

export interface SessionMode {
  /** Id for a new session (store.genid). */
  newId(): string;
  load(sid: SessionId): Promise<LoadResult | null>;
  /** A load answered from this process at once (sticky's local sessions); undefined: only load() can answer. */
  loadLocal?(sid: SessionId): LoadResult | null | undefined;
  /**
   * `bytes` = the session item (store.encodeItem: transcoder bytes, behind the id when its key is a hash); maxInactive
   * in s (> 0). Nothing returned: done, nothing to wait for.
   */
  save(
    sid: SessionId,
    bytes: Buffer,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> | undefined;
  /** `bytesOf` encodes the session only when the mode needs bytes it does not have (no record of them). */
  touch(
    sid: SessionId,
    bytesOf: () => Buffer,
    maxInactive: number,
    record: SessionRecord | undefined,
  ): Promise<void> | undefined;
  destroy(sid: SessionId): Promise<void>;
  /**
   * A save or touch of `target` arrived under `alias`, an id the session was moved away from, because the framework
   * cannot change the cookie: keep the alias's forwarding marker alive as long as the session is used.
   */
  keepAlias(alias: SessionId, target: SessionId, maxInactive: number): Promise<void>;
  /**
   * Listing (store.all/length/ids): the copy `get` would serve for `sid`, whose session key was found on `node`; null
   * when that key is not the session's live primary copy (another node's stray, expired, moved by a relocation).
   * Read-only: no repair, no stats. Throws when the node does not answer.
   */
  peek(sid: SessionId, node: string): Promise<{ bytes: Buffer; validity?: Validity } | null>;
  /** Sticky: the sessions held locally, listed before memcached's copies (peek skips their ids). */
  localSessions?(): Iterable<[id: string, bytes: Buffer, accessedAt: number]>;
  /** Sticky: drops every local session (store.clear). */
  clearLocal?(): void;
  close(): Promise<void>;
  /** After the node list changed (`before`: the ids before): re-place what the change displaced. */
  nodesChanged?(before: readonly string[]): void;
  /** Resolves when background work (repairs) is done. */
  idle?(): Promise<void>;
}

/**
 * The item stored under `id` for a session item or transcoder bytes: the bytes alone, or with the id in front when
 * the id's keys hold a hash of it (keys.ts). Relocation and takeover pass the old id's item for the new id.
 */
export function itemUnderId(keys: KeyFormat, id: string, item: Buffer): Buffer {
  const bytes = transcodedBytes(item);
  return keys.isHashed(id) ? withId(id, bytes) : bytes;
}
