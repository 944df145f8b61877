// The parts of a MemcachedStore, built from its options: nodes, mode, session service, lister, index, discovery.
import type { MemcachedNodeConfig } from '../memcached/node-list';
import { loggerFrom } from '../core/logger';
import { Statistics } from '../core/stats';
import { Discovery } from '../memcached/discovery';
import { KeyFormat } from '../memcached/keys';
import { NodeSet } from '../memcached/nodes';
import { SessionIdFormat } from '../memcached/session-id';
import { BackupRunner } from '../modes/backup';
import { SessionLister } from '../modes/listing';
import type { ModeContext, SessionMode } from '../modes/mode';
import { NonStickyMode } from '../modes/non-sticky';
import { IdMoves } from '../modes/session-record';
import { StickyMode } from '../modes/sticky';
import { UserIndex } from '../modes/user-index';
import { JsonTranscoder } from '../transcoders/json';
import { transcodedBytes } from '../transcoders/transcoder';
import { type MemcachedStoreOptions, resolveConfig } from './config';
import { ON_KEY, type StoreTestHooks } from './options';
import { SessionService } from './session-service';

/** What `store.stats()` returns: msm's counters by name, per-node state and operation counts, timings, backups in flight. */
export interface StoreStats {
  [counter: string]: unknown;
  /** Per node: availability, address, operations sent. */
  nodes: ReturnType<NodeSet['snapshot']>;
  /** Durations of loads, saves and backups (count, mean, max). */
  timings: ReturnType<Statistics['timingSnapshot']>;
  /** Backup writes sent but not yet confirmed. */
  pendingBackups: number;
}

export type StoreParts = ReturnType<typeof assemble>;

/** `applyNodes`: what a discovered node list is handed to (the store applies it). */
export function assemble(options: MemcachedStoreOptions, applyNodes: (nodes: MemcachedNodeConfig[]) => void) {
  const config = resolveConfig(options);
  const logger = loggerFrom(options.logger);
  // Its shape was checked with the other options (options.ts).
  const transcoder = options.transcoder ?? new JsonTranscoder();
  const statistics = new Statistics();
  const keys = new KeyFormat(config.storageKeyPrefix);
  const { nodes: list, failoverNodeIds, operationTimeout, nodeAvailabilityCacheTTL, username, password, tls } = config;
  const nodes = new NodeSet({
    nodes: list,
    failoverNodeIds,
    operationTimeout,
    nodeAvailabilityCacheTTL,
    keys,
    logger,
    username,
    password,
    tls,
    zones: config.zones,
    onKey: (options as StoreTestHooks)[ON_KEY],
  });
  // The node set's knownIds, live: ids naming a node removed at run time still parse as naming it.
  const idFormat = new SessionIdFormat(nodes.knownIds, config.encodeNodeId);
  const backups = new BackupRunner(config.sessionBackupAsync, config.sessionBackupTimeout, logger);
  const moves = new IdMoves();
  const ctx: ModeContext = {
    cfg: config,
    nodes,
    keys,
    idFormat,
    stats: statistics,
    logger,
    backups,
    moves,
    // Modes decode session items: the transcoder's bytes, behind the id when its key is a hash (itemUnderId).
    transcoder: {
      name: transcoder.name,
      encode: (s, c) => transcoder.encode(s, c),
      decode: (b, c) => transcoder.decode(transcodedBytes(b), c),
    },
  };
  const mode: SessionMode = config.sticky ? new StickyMode(ctx) : new NonStickyMode(ctx);
  const index = config.indexBy
    ? new UserIndex(
        {
          nodes,
          keys,
          ids: idFormat,
          stats: statistics,
          logger,
          load: (sid) => mode.load(sid),
          destroy: (sid) => mode.destroy(sid),
        },
        config.indexBy,
      )
    : undefined;
  const lister = new SessionLister(ctx, mode);
  const sessions = new SessionService({ config, keys, idFormat, transcoder, statistics, logger, mode, index, moves });
  const ad = config.autoDiscovery;
  const discovery = ad
    ? new Discovery({ ...ad, timeoutMs: config.operationTimeout, tls: config.tls, logger, apply: applyNodes })
    : undefined;
  return {
    config,
    logger,
    transcoder,
    statistics,
    keys,
    nodes,
    idFormat,
    backups,
    mode,
    index,
    lister,
    sessions,
    discovery,
  };
}
