// Auto-discovery (AWS ElastiCache's configuration endpoint): `config get cluster` answers a version line and the
// nodes as `hostname|ip|port` entries separated by spaces. Polled every intervalMs; each answer becomes the node
// list. Node ids are derived from hostname:port, so they stay the same when nodes join, leave or are reordered.
import { StorageUnavailableError } from '../core/errors';
import { createHash } from 'crypto';
import type { ConnectionOptions } from 'tls';
import { type MemcachedNodeConfig, parseHostPort } from './node-list';
import type { Logger } from '../core/logger';
import { connectSocket } from './tls';

/** Discovered node ids: `n` + 10 hex digits of sha256("hostname:port"). */
export const DISCOVERED_ID = /^n[0-9a-f]{10}$/;

export function discoveredNodeId(hostname: string, port: number): string {
  return 'n' + createHash('sha256').update(`${hostname.toLowerCase()}:${port}`).digest('hex').slice(0, 10);
}

export interface ClusterConfig {
  version: number;
  /** Sorted by id: the order (which node is next, for backups) does not depend on the endpoint's order. */
  nodes: MemcachedNodeConfig[];
}

/**
 * The data block of a `config get cluster` reply (version line, node line). Throws on anything malformed: a reply
 * that cannot be trusted entirely is not used at all.
 */
export function parseClusterConfig(data: string): ClusterConfig {
  const lines = data
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (lines.length !== 2 || !/^\d+$/.test(lines[0])) throw new Error('expected a version line and a node line');
  const nodes: MemcachedNodeConfig[] = [];
  for (const entry of lines[1].split(/\s+/)) {
    const parts = entry.split('|');
    if (parts.length !== 3) throw new Error(`node entry "${entry}" is not hostname|ip|port`);
    const [hostname, ip, port] = parts;
    const checked = parseHostPort('autoDiscovery', hostname, port, entry);
    // Connect to the IP when given (no DNS per connection); the id comes from the name, which survives a new IP.
    const host = ip ? parseHostPort('autoDiscovery', ip, port, entry).host : checked.host;
    const id = discoveredNodeId(checked.host, checked.port);
    if (nodes.some((n) => n.id === id)) throw new Error(`node ${hostname}:${port} is listed twice`);
    nodes.push({ id, host, port: checked.port });
  }
  nodes.sort((a, b) => (a.id < b.id ? -1 : 1));
  return { version: Number(lines[0]), nodes };
}

export interface DiscoveryOptions {
  endpoint: { host: string; port: number };
  intervalMs: number;
  /** ms, deadline of one poll. */
  timeoutMs: number;
  tls: ConnectionOptions | undefined;
  logger: Logger;
  /** Called with every list that differs from the last one applied. */
  apply(nodes: MemcachedNodeConfig[]): void;
}

/** Polls the endpoint. An endpoint that does not answer, or answers garbage, keeps the last known list. */
export class Discovery {
  private timer: NodeJS.Timeout | undefined;
  private polling: Promise<boolean> | undefined;
  /** When pollSoon last polled (the timer's polls do not count: they must not delay an asked-for one). */
  private lastAskedAt = 0;
  private applied = '';
  private lastError: string | undefined;
  private readonly firstList: Promise<void>;
  private resolveFirst!: () => void;
  private closed = false;

  constructor(private readonly o: DiscoveryOptions) {
    this.firstList = new Promise((r) => (this.resolveFirst = r));
    void this.poll();
    this.timer = setInterval(() => void this.poll(), o.intervalMs);
    this.timer.unref?.();
  }

  get endpoint(): string {
    return `${this.o.endpoint.host}:${this.o.endpoint.port}`;
  }

  /** Resolves once a list has been applied; throws after `timeoutMs` without one, saying why. */
  async waitForNodes(timeoutMs: number): Promise<void> {
    let t: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      t = setTimeout(
        () =>
          reject(
            new StorageUnavailableError(
              `express-msm: no memcached nodes: autoDiscovery endpoint ${this.endpoint} has not answered`
                + (this.lastError ? ` (${this.lastError})` : ''),
            ),
          ),
        timeoutMs,
      );
    });
    try {
      await Promise.race([this.firstList, timeout]);
    } finally {
      clearTimeout(t);
    }
  }

  /**
   * A poll now, unless one ran within the last `minGapMs` (a request naming an unknown node asks for one; many
   * such requests must not flood the endpoint). Resolves true when the node list changed.
   */
  pollSoon(minGapMs = 1000): Promise<boolean> {
    if (this.polling) return this.polling;
    if (Date.now() - this.lastAskedAt < minGapMs) return Promise.resolve(false);
    this.lastAskedAt = Date.now();
    return this.poll();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
  }

  private poll(): Promise<boolean> {
    if (this.polling) return this.polling;
    this.polling = this.fetch()
      .then((data) => {
        if (this.closed) return false;
        const config = parseClusterConfig(data);
        this.lastError = undefined;
        const key = JSON.stringify(config.nodes);
        if (key === this.applied) return false;
        this.o.apply(config.nodes);
        this.applied = key;
        this.o.logger.info(`autoDiscovery ${this.endpoint}: version ${config.version}, ${config.nodes.length} nodes`);
        this.resolveFirst();
        return true;
      })
      .catch((e: Error) => {
        const message = e.message;
        if (message !== this.lastError) {
          this.o.logger.warn(`autoDiscovery ${this.endpoint}: ${message}; keeping the last known node list`);
        }
        this.lastError = message;
        return false;
      })
      .finally(() => {
        this.polling = undefined;
      });
    return this.polling;
  }

  /** One `config get cluster` on its own connection: the data block of the reply. */
  private fetch(): Promise<string> {
    const { host, port } = this.o.endpoint;
    return new Promise((resolve, reject) => {
      let buf = Buffer.alloc(0);
      let done = false;
      const sock = connectSocket(host, port, this.o.tls, () => sock.write('config get cluster\r\n'));
      const finish = (err: Error | undefined, data?: string) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        if (err) reject(err);
        else resolve(data!);
      };
      const timer = setTimeout(() => finish(new Error(`no answer within ${this.o.timeoutMs} ms`)), this.o.timeoutMs);
      sock.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d]);
        if (buf.length > 1024 * 1024) return finish(new Error('reply larger than 1 MB'));
        const eol = buf.indexOf('\r\n');
        if (eol < 0) return;
        const head = buf.subarray(0, eol).toString('latin1');
        const m = /^CONFIG cluster \d+ (\d+)$/.exec(head);
        if (!m) return finish(new Error(`unexpected reply "${head.slice(0, 80)}"`));
        const end = eol + 2 + Number(m[1]);
        if (buf.length < end + 7) return; // data, then \r\nEND\r\n
        if (buf.subarray(end, end + 7).toString('latin1') !== '\r\nEND\r\n')
          return finish(new Error('reply not terminated by END'));
        finish(undefined, buf.subarray(eol + 2, end).toString('latin1'));
      });
      sock.on('error', (e) => finish(e));
      sock.on('close', () => finish(new Error('connection closed before the reply')));
    });
  }
}
