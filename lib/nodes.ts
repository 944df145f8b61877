// The node set: ids in configured order, which node is next, and an availability cache fed by
// `ping-<nodeId>` probes and by operation results (msm's NodeAvailabilityCache, 1 s by default).
import { NodeClient } from './node-client';
import type { MemcachedNodeConfig } from './config';
import type { KeyFormat } from './keys';
import type { Logger } from './logger';

interface Availability {
  available: boolean;
  checkedAt: number;
  probing: Promise<void> | undefined;
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
  onKey?: (key: string) => void;
}

export class NodeSet {
  readonly ids: readonly string[];
  readonly primaryIds: readonly string[];
  readonly failoverIds: readonly string[];
  private readonly clients = new Map<string, NodeClient>();
  private readonly state = new Map<string, Availability>();

  constructor(private readonly opts: NodeSetOptions) {
    this.ids = opts.nodes.map((n) => n.id);
    this.failoverIds = opts.failoverNodeIds;
    this.primaryIds = this.ids.filter((id) => !opts.failoverNodeIds.includes(id));
    for (const n of opts.nodes) {
      this.clients.set(n.id, new NodeClient({ ...n, operationTimeout: opts.operationTimeout, logger: opts.logger,
        username: opts.username, password: opts.password, onKey: opts.onKey }));
      // Unknown nodes start as available: the first operation or probe tells.
      this.state.set(n.id, { available: true, checkedAt: 0, probing: undefined });
    }
  }

  has(id: string): boolean {
    return this.clients.has(id);
  }

  client(id: string): NodeClient {
    const c = this.clients.get(id);
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
    if (!s) return;
    if (s.available) this.opts.logger.warn(`memcached node ${id} unavailable: ${error?.message ?? 'operation failed'}`);
    s.available = false;
    s.checkedAt = Date.now();
  }

  markOk(id: string): void {
    const s = this.state.get(id);
    if (!s) return;
    if (!s.available) this.opts.logger.info(`memcached node ${id} available again`);
    s.available = true;
    s.checkedAt = Date.now();
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
  nextAvailable(id: string, exclude: readonly string[] = []): string | undefined {
    const start = this.ids.indexOf(id);
    let fallback: string | undefined;
    for (let i = 1; i <= this.ids.length; i++) {
      const cand = this.ids[(start + i + this.ids.length) % this.ids.length];
      if (cand === id || exclude.includes(cand) || !this.isAvailable(cand)) continue;
      if (!this.failoverIds.includes(cand)) return cand;
      fallback ??= cand;
    }
    return fallback;
  }

  /** Node for ids that carry none (plain express-session ids): stable over the primaries (FNV-1a). */
  hashNode(random: string): string {
    let h = 0x811c9dc5;
    for (let i = 0; i < random.length; i++) {
      h ^= random.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    return this.primaryIds[(h >>> 0) % this.primaryIds.length];
  }

  snapshot(): Record<string, { available: boolean; address: string; failover: boolean; ops: NodeClient['ops'] }> {
    const out: ReturnType<NodeSet['snapshot']> = {};
    for (const id of this.ids) {
      const c = this.client(id);
      out[id] = { available: this.state.get(id)!.available, address: c.address, failover: this.failoverIds.includes(id), ops: { ...c.ops } };
    }
    return out;
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
  }

  private probe(id: string): void {
    void this.probeNow(id);
  }

  private probeNow(id: string): Promise<void> {
    const s = this.state.get(id)!;
    if (s.probing) return s.probing;
    // Claim the slot now so concurrent callers share this probe.
    s.checkedAt = Date.now();
    s.probing = this.client(id).get(this.opts.keys.ping(id)).then((r) => {
      s.probing = undefined;
      if (r.ok) this.markOk(id);
      else this.markFailed(id, r.error);
    });
    return s.probing;
  }
}
