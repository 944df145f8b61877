// The node set: ids in configured order, which node is next, and an availability cache fed by
// `ping-<nodeId>` probes and by operation results (msm's NodeAvailabilityCache, 1 s by default). msm probes a
// stale entry before answering; genid cannot wait, so entries are kept fresh in the background instead: a probe as
// each turns stale (an unref'd timer) and at once when a node's connection closes (killed, restarted).
import { randomBytes } from 'crypto';
import { EventEmitter } from 'events';
import type { ConnectionOptions } from 'tls';
import { NodeClient } from './node-client';
import type { MemcachedNodeConfig } from './node-list';
import type { KeyFormat } from './keys';
import type { Logger } from '../core/logger';
import type { SessionId } from './session-id';
import { type PlacementView, type ZoneOf, placeBackups } from './placement';

/** The probe marker: `msm:<the writing store's random instance id>`; earlier versions wrote `msm`. */
const PING_MARKER = 'msm';
/** ms, the shortest wait between background refreshes (nodeAvailabilityCacheTTL may be 0). */
const MIN_REFRESH_MS = 100;

interface Availability {
  available: boolean;
  checkedAt: number;
  /** Why the node was last marked unavailable (the cause of a storage error). */
  error?: Error;
  probing: Promise<void> | undefined;
  /** This process has found (or written) the probe marker on the node: a later miss means it lost its items. */
  markerSeen: boolean;
}

export interface NodeSetOptions {
  nodes: MemcachedNodeConfig[];
  failoverNodeIds: string[];
  operationTimeout: number;
  nodeAvailabilityCacheTTL: number;
  keys: KeyFormat;
  logger: Logger;
  username?: string;
  password?: string;
  tls?: ConnectionOptions;
  /** Each node's zone (the `zones` option); none: every node a zone of its own. */
  zones?: ZoneOf;
  /** @internal Test hook: every key before it is sent. */
  onKey?: (key: string) => void;
}

/** What store.health() resolves with. */
export interface StoreHealth {
  /** At least one node answers. */
  ok: boolean;
  /** Each current node: whether it answered the probe, and if not, why. */
  nodes: Record<
    string,
    {
      /** The node answered the probe. */
      available: boolean;
      /** Why it did not. */
      error?: string | undefined;
    }
  >;
}

/** nextAvailable's default exclusion list: shared, not allocated per call (every save and refresh). */
const NONE: readonly string[] = [];
/** How many earlier primary lists are kept: ids that name no node are also looked for where these placed them. */
const FORMER_PLACEMENTS = 4;

/** 32-bit FNV-1a of `s`, continuing from `h`. */
function fnv1a(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** murmur3's finaliser: FNV's low bits alone rank nodes poorly. */
function mix(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/**
 * Rendezvous (highest random weight) hashing: the node with the highest weight for the key. A node that joins
 * takes only the keys it now outweighs; one that leaves gives up only its own. Ties go to the earlier node.
 */
export function rendezvous(key: string, nodes: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestWeight = -1;
  for (const node of nodes) {
    const w = mix(fnv1a(key, fnv1a(`${node}\0`)));
    if (w > bestWeight) {
      best = node;
      bestWeight = w;
    }
  }
  return best;
}

/**
 * Emits 'returned' (nodeId, reason) when a node is reachable again after being marked down ('reconnected'), or
 * answers without a probe marker in `ping-<nodeId>` while the key prefix is in use ('restarted': it lost its
 * items). Repair listens. Emits 'left' (nodeId) for each node update() took off the list: a drain (modes/drain.ts)
 * holds it and copies its sessions onto the remaining nodes. Emits 'down' (nodeId) when a node is marked
 * unavailable: repair re-replicates its copies if it stays down.
 */
export class NodeSet extends EventEmitter {
  /** Current nodes in configured order; replaced (never mutated) by update(). */
  ids: readonly string[] = [];
  primaryIds: readonly string[] = [];
  failoverIds: readonly string[] = [];
  /**
   * Every node id this set has had, current or removed: session ids that name a removed node must still parse as
   * naming it (so they are served from their backups and relocated, as for a dead node), not as plain ids.
   */
  readonly knownIds = new Set<string>();
  private readonly clients = new Map<string, NodeClient>();
  private readonly configs = new Map<string, MemcachedNodeConfig>();
  /** Each node's zone, current and removed (a removed node's copies are still placed by its zone). */
  private readonly zoneById = new Map<string, string>();
  /** Clients of removed nodes: operations in flight finish, later ones fail ("closed"), never throw. */
  private readonly removed = new Map<string, NodeClient>();
  /** The last list each removed node was part of: its next node is still found where it was (nextAvailable). */
  private readonly formerLists = new Map<string, readonly string[]>();
  /** Earlier primary lists, newest first: where ids that name no node were placed before (formerOwners). */
  private formerPrimaries: Array<readonly string[]> = [];
  private readonly closeTimers = new Set<NodeJS.Timeout>();
  /** A removed node's pending close (update()): hold() cancels it for a drain. */
  private readonly closeTimerOf = new Map<string, NodeJS.Timeout>();
  /** Removed nodes held for a drain (drain.ts); reachable false once a read failed: no longer read. */
  private readonly held = new Map<string, { reachable: boolean }>();
  private readonly state = new Map<string, Availability>();
  private refreshTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Written into this store's probe markers: a marker with another id shows the key prefix in use elsewhere. */
  private readonly marker = Buffer.from(`${PING_MARKER}:${randomBytes(9).toString('base64url')}`);

  constructor(private readonly opts: NodeSetOptions) {
    super();
    this.update(opts.nodes, opts.failoverNodeIds);
    this.refreshStale();
  }

  /**
   * Replaces the node list (validated by the caller). Kept nodes keep their client and availability; a node whose
   * address changed counts as removed and added. Removed nodes count as down from now on; their clients close
   * after operationTimeout, so operations already sent can finish. Returns what changed.
   */
  update(
    nodes: readonly MemcachedNodeConfig[],
    failoverIds: readonly string[],
  ): { added: string[]; removed: string[] } {
    const added: string[] = [];
    const removed: string[] = [];
    const next = new Map(nodes.map((n) => [n.id, n]));
    for (const [id, c] of this.clients) {
      const n = next.get(id);
      const was = this.configs.get(id)!;
      if (n && n.host === was.host && n.port === was.port) continue;
      this.clients.delete(id);
      this.configs.delete(id);
      this.state.delete(id);
      this.removed.get(id)?.close();
      this.removed.set(id, c);
      const t = setTimeout(() => {
        this.closeTimers.delete(t);
        if (this.closeTimerOf.get(id) === t) this.closeTimerOf.delete(id);
        c.close();
      }, this.opts.operationTimeout + 100);
      t.unref?.();
      this.closeTimers.add(t);
      this.closeTimerOf.set(id, t);
      removed.push(id);
      this.formerLists.set(id, this.ids);
    }
    for (const n of nodes) {
      if (this.clients.has(n.id)) continue;
      this.clients.set(
        n.id,
        new NodeClient({
          ...n,
          operationTimeout: this.opts.operationTimeout,
          logger: this.opts.logger,
          username: this.opts.username,
          password: this.opts.password,
          tls: this.opts.tls,
          onKey: this.opts.onKey,
          onConnectionLost: () => this.connectionLost(n.id),
        }),
      );
      this.configs.set(n.id, n);
      // Listed again while draining: the drain stops (its walk fails with the old client), the node is a node again.
      if (this.held.delete(n.id)) this.removed.get(n.id)?.close();
      this.zoneById.set(n.id, this.opts.zones ? this.opts.zones(n) : `node:${n.id}`);
      this.removed.delete(n.id);
      // Unknown nodes start as available: the first operation or probe tells.
      this.state.set(n.id, { available: true, checkedAt: 0, probing: undefined, markerSeen: false });
      this.knownIds.add(n.id);
      this.formerLists.delete(n.id);
      added.push(n.id);
    }
    this.ids = nodes.map((n) => n.id);
    this.failoverIds = [...failoverIds];
    const before = this.primaryIds;
    this.primaryIds = this.ids.filter((id) => !failoverIds.includes(id));
    if (before.length && before.join(',') !== this.primaryIds.join(','))
      this.formerPrimaries = [before, ...this.formerPrimaries].slice(0, FORMER_PLACEMENTS);
    // Not a node whose address changed: that one is listed still (and repaired as a restarted node).
    for (const id of removed) if (!this.clients.has(id)) this.emit('left', id);
    return { added, removed };
  }

  has(id: string): boolean {
    return this.clients.has(id);
  }

  client(id: string): NodeClient {
    const c = this.clients.get(id) ?? this.removed.get(id);
    if (!c) throw new Error(`express-msm: no memcached node "${id}"`);
    return c;
  }

  /**
   * Cached answer, never blocks: when the entry is older than the TTL a probe runs in the background and the last
   * known answer is returned. Operation failures mark a node down at once, successes mark it up.
   */
  isAvailable(id: string): boolean {
    const s = this.state.get(id);
    if (!s) return false;
    if (Date.now() - s.checkedAt >= this.opts.nodeAvailabilityCacheTTL) this.probe(id);
    return s.available;
  }

  /** Waits for a fresh probe of every node whose entry is stale (start-up, tests, the demo's health check). */
  async refresh(): Promise<void> {
    await Promise.all(this.ids.map((id) => this.probeNow(id)));
  }

  markFailed(id: string, error?: Error): void {
    const s = this.state.get(id);
    if (!s) return this.leavingFailed(id, error);
    if (s.available) {
      // After close() every operation in flight fails with "client is closed": the store closing, not the node.
      const log = this.closed ? this.opts.logger.debug : this.opts.logger.warn;
      log.call(this.opts.logger, `memcached node ${id} unavailable: ${error?.message ?? 'operation failed'}`);
    }
    const wasUp = s.available;
    s.available = false;
    s.checkedAt = Date.now();
    if (error) s.error = error;
    if (wasUp && !this.closed) this.emit('down', id);
  }

  /** Whether any current node is available, as the cache has it (no probe). */
  anyAvailable(): boolean {
    return this.ids.some((id) => this.state.get(id)!.available);
  }

  /**
   * Whether any current node answers now: the nodes the cache has up are probed first (each bounded by
   * operationTimeout), since a node that died a moment ago may not have been noticed yet.
   */
  async anyAnswers(): Promise<boolean> {
    await Promise.all(this.ids.filter((id) => this.state.get(id)!.available).map((id) => this.probeNow(id)));
    return this.anyAvailable();
  }

  /**
   * Probes every current node now (each bounded by operationTimeout) and says which answered; `error`: why one did
   * not. ok: at least one answers, so loads and saves can be served (with failover).
   */
  async health(): Promise<StoreHealth> {
    const ids = this.ids;
    await Promise.all(ids.map((id) => this.probeNow(id)));
    const nodes: StoreHealth['nodes'] = {};
    for (const id of ids) {
      const s = this.state.get(id);
      if (!s) continue; // removed while probing
      nodes[id] = s.available ? { available: true } : { available: false, error: s.error?.message ?? 'unavailable' };
    }
    return { ok: Object.values(nodes).some((n) => n.available), nodes };
  }

  /** Why `id` was last marked unavailable, if known. */
  lastError(id: string): Error | undefined {
    return this.state.get(id)?.error;
  }

  markOk(id: string): void {
    const s = this.state.get(id);
    if (!s) return;
    const returned = !s.available;
    s.available = true;
    s.checkedAt = Date.now();
    if (returned) {
      // warn, not info: the default logger shows warnings, and a node's return belongs with its failure.
      this.opts.logger.warn(`memcached node ${id} available again`);
      this.emit('returned', id, 'reconnected');
    }
  }

  /** A random available primary; failover nodes only when no primary is up (msm NodeIdService). */
  pickForNewSession(): string {
    const up = this.primaryIds.filter((id) => this.isAvailable(id));
    if (up.length) return up[Math.floor(Math.random() * up.length)];
    const fo = this.failoverIds.filter((id) => this.isAvailable(id));
    if (fo.length) return fo[Math.floor(Math.random() * fo.length)];
    // Nothing is up: an id for a random primary; its write will fail loudly rather than lose data quietly.
    return this.primaryIds[Math.floor(Math.random() * this.primaryIds.length)];
  }

  /**
   * The node after `id` in configured order that is available and is not `id` (msm getNextAvailableNodeId):
   * primaries first, failover nodes only when no other primary is up. Undefined when none.
   */
  nextAvailable(id: string, exclude: readonly string[] = NONE): string | undefined {
    // A removed node's next is looked up in the list it left, so that every instance finds the same node whether or
    // not it has seen the removal yet: one that has not still reads that node's backups (autoDiscovery, a leave).
    const start = this.ids.indexOf(id);
    const former = start < 0 ? this.formerLists.get(id) : undefined;
    return (
      (former && this.nextIn(former, former.indexOf(id), id, exclude)) ?? this.nextIn(this.ids, start, id, exclude)
    );
  }

  /**
   * The nodes for the backups of sessions whose primary is `primary` (placement.ts): up to `count`, available ones,
   * in zones holding no copy yet while there are such. With no zones and count 1: [nextAvailable(primary)].
   * `assumeUp`: a node taken for available whatever its state (where copies were before it went down).
   */
  backupNodesOf(primary: string, count: number, assumeUp?: string): string[] {
    const start = this.ids.indexOf(primary);
    const former = start < 0 ? this.formerLists.get(primary) : undefined;
    // Every request asks this for a listed primary: the current list's view is built once, not per call.
    if (!former && assumeUp === undefined) return placeBackups(this.currentView, primary, count);
    const view = (list: readonly string[]): PlacementView => ({
      list,
      // A former list may name nodes removed since.
      isUp: (id) => (list === this.ids || this.clients.has(id)) && (id === assumeUp || this.isAvailable(id)),
      isFailover: (id) => this.failoverIds.includes(id),
      zoneOf: (id) => this.zoneOf(id),
    });
    const fromFormer = former ? placeBackups(view(former), primary, count) : [];
    if (fromFormer.length >= count) return fromFormer;
    return [...fromFormer, ...placeBackups(view(this.ids), primary, count - fromFormer.length, fromFormer)];
  }

  /** The current list as placement sees it (`list` follows update()). */
  private readonly currentView: PlacementView = (() => {
    const self = this;
    return {
      get list() {
        return self.ids;
      },
      isUp: (id: string) => this.isAvailable(id),
      isFailover: (id: string) => this.failoverIds.includes(id),
      zoneOf: (id: string) => this.zoneOf(id),
    };
  })();

  /** A node's zone (`zone:<name>`), or `node:<id>` for a node the zones option does not name. */
  zoneOf(id: string): string {
    return this.zoneById.get(id) ?? `node:${id}`;
  }

  private nextIn(list: readonly string[], start: number, id: string, exclude: readonly string[]): string | undefined {
    let fallback: string | undefined;
    for (let i = 1; i <= list.length; i++) {
      const cand = list[(start + i + list.length) % list.length];
      // A former list may name nodes removed since.
      if (
        cand === id
        || exclude.includes(cand)
        || (list !== this.ids && !this.clients.has(cand))
        || !this.isAvailable(cand)
      )
        continue;
      if (!this.failoverIds.includes(cand)) return cand;
      fallback ??= cand;
    }
    return fallback;
  }

  /** The node named in the id; for ids that carry none (a single node, express-session's own ids) hashNode. */
  nodeOf(sid: SessionId): string {
    return sid.nodeId ?? this.hashNode(sid.random);
  }

  /** Node for ids that carry none (plain express-session ids): rendezvous over the primaries. */
  hashNode(random: string): string {
    return rendezvous(random, this.primaryIds)!;
  }

  /**
   * Where earlier node lists of this set placed an id that names no node, other than its node now: a load that finds
   * nothing at the new node looks there. Nodes removed since are included while their client lasts.
   */
  formerOwners(sid: SessionId): string[] {
    if (sid.nodeId !== undefined) return [];
    const now = this.nodeOf(sid);
    const out: string[] = [];
    for (const list of this.formerPrimaries) {
      const n = rendezvous(sid.random, list);
      if (n && n !== now && !out.includes(n) && (this.clients.has(n) || this.readable(n))) out.push(n);
    }
    return out;
  }

  // --- Leaving nodes (modes/drain.ts). A removed node that a drain holds keeps its client: loads read it, nothing
  // writes it, placement ignores it (it is in no list), until the drain releases it or it is listed again.

  /** Keeps removed node `id`'s client open for a drain. False when `id` is not a removed node. */
  hold(id: string): boolean {
    const t = this.closeTimerOf.get(id);
    // No pending close: not removed, listed again, or its client closed already.
    if (!t || !this.removed.has(id) || this.clients.has(id) || this.closed) return false;
    clearTimeout(t);
    this.closeTimers.delete(t);
    this.closeTimerOf.delete(id);
    this.held.set(id, { reachable: true });
    return true;
  }

  /** The drain of `id` is over: its client closes (unless `id` was listed again meanwhile) and it is not read again. */
  release(id: string): void {
    if (!this.held.delete(id) || this.clients.has(id)) return;
    this.removed.get(id)?.close();
  }

  /** Leaving nodes that still answer: loads read them too. */
  leavingIds(): string[] {
    const out: string[] = [];
    for (const [id, h] of this.held) if (h.reachable) out.push(id);
    return out;
  }

  isLeaving(id: string): boolean {
    return this.held.get(id)?.reachable === true;
  }

  /** A removed node whose client is open and worth reading: held by a drain and answering, or closing soon. */
  private readable(id: string): boolean {
    return this.removed.has(id) && this.held.get(id)?.reachable !== false;
  }

  /** A read of leaving node `id` failed: loads stop reading it (its drain ends with its walk). */
  private leavingFailed(id: string, error?: Error): void {
    const h = this.held.get(id);
    if (!h?.reachable || this.closed) return;
    h.reachable = false;
    this.opts.logger.warn(`memcached node ${id} (leaving) unavailable: ${error?.message ?? 'operation failed'}`);
  }

  snapshot(): Record<string, { available: boolean; address: string; failover: boolean; ops: NodeClient['ops'] }> {
    const out: ReturnType<NodeSet['snapshot']> = {};
    for (const id of this.ids) {
      const c = this.client(id);
      out[id] = {
        available: this.state.get(id)!.available,
        address: c.address,
        failover: this.failoverIds.includes(id),
        ops: { ...c.ops },
      };
    }
    return out;
  }

  /** Ends the key walks in progress on every node (listing, repairs): see NodeClient.abortWalks. */
  abortWalks(reason: string): void {
    for (const c of this.clients.values()) c.abortWalks(reason);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.refreshTimer);
    for (const t of this.closeTimers) clearTimeout(t);
    for (const c of [...this.clients.values(), ...this.removed.values()]) c.close();
  }

  /** Probes every stale entry, then sleeps until the next one turns stale. Unref'd: never keeps the process alive. */
  private refreshStale(): void {
    if (this.closed) return;
    const now = Date.now();
    const ttl = this.opts.nodeAvailabilityCacheTTL;
    let next = Infinity;
    for (const [id, s] of this.state) {
      if (now - s.checkedAt >= ttl) this.probe(id);
      next = Math.min(next, s.checkedAt + ttl);
    }
    // No nodes yet (autoDiscovery): look again after a TTL.
    const wait = Number.isFinite(next) ? next - now : ttl;
    this.refreshTimer = setTimeout(() => this.refreshStale(), Math.max(wait, MIN_REFRESH_MS));
    this.refreshTimer.unref();
  }

  /** A node's connection closed under us: whether it is gone or back already, a probe tells before the next genid. */
  private connectionLost(id: string): void {
    if (!this.closed && this.state.has(id)) this.probe(id);
  }

  private probe(id: string): void {
    void this.probeNow(id);
  }

  /**
   * Whether another node holds a probe marker that another store wrote: the key prefix was in use, so a node without
   * one lost its items. Only this store's markers (or none): a first start, or every node lost everything; nothing
   * to copy either way. Instance ids, not clocks: app machines' clocks may disagree.
   */
  private async prefixLivedBefore(id: string): Promise<boolean> {
    const others = this.ids.filter((o) => o !== id && this.clients.has(o));
    const found = await Promise.all(others.map((o) => this.client(o).get(this.opts.keys.ping(o), true)));
    return found.some((r) => r.ok && r.value !== null && !r.value.equals(this.marker));
  }

  private probeNow(id: string): Promise<void> {
    const s = this.state.get(id)!;
    if (s.probing) return s.probing;
    if (this.closed) return Promise.resolve();
    // Claim the slot now so concurrent callers share this probe.
    s.checkedAt = Date.now();
    const client = this.client(id);
    const ping = this.opts.keys.ping(id);
    s.probing = client
      .get(ping, true)
      .then(async (r) => {
        if (this.state.get(id) !== s) return; // removed (or replaced) meanwhile
        if (!r.ok) return this.markFailed(id, r.error);
        this.markOk(id);
        // msm only needs the get to answer. The marker tells a node that lost its items: the first instance to put it
        // back (add) reports the node as restarted, once. Not a key prefix that is new to every node (a first start):
        // there is nothing to repair then, and a walk of each node's keys would be for nothing.
        if (r.value === null) {
          const a = await client.add(ping, this.marker, 0, true);
          if (!a.ok) return;
          if (a.value && (s.markerSeen || (await this.prefixLivedBefore(id)))) this.emit('returned', id, 'restarted');
        }
        s.markerSeen = true;
      })
      .finally(() => {
        s.probing = undefined;
      });
    return s.probing;
  }
}
