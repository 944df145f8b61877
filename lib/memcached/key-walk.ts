// One walk over a node's keys: `lru_crawler metadump hash` on a socket of its own (text protocol: memjs speaks binary
// only), its keys handed over a batch at a time while memcached goes on listing them.
import type * as net from 'net';
import type { ConnectionOptions } from 'tls';
import { isValidMemcachedKey } from './keys';
import { connectSocket } from './tls';

export interface WalkOptions {
  /** Keys per batch handed to onBatch. */
  batchSize?: number;
  /** ms without data from memcached before the walk fails. */
  idleTimeoutMs?: number;
  /** Only these keys are kept and handed over (fewer keys wait in memory). */
  keep?: (key: string) => boolean;
}

/** A walk's end: the number of keys handed over, or why it failed (retry: the server was busy with another crawl). */
export type WalkResult = { ok: true; value: number } | { ok: false; error: Error; retry: boolean };

export interface WalkTarget {
  host: string;
  port: number;
  tls?: ConnectionOptions;
  /** Starts every error message, e.g. `memcached n1 (127.0.0.1:11211)`. */
  name: string;
}

/** A metadump key (URL-encoded by memcached); undefined for bytes that are not UTF-8 (never one of ours). */
function decodeKey(encoded: string): string | undefined {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}

/**
 * memcached 1.6.9-1.6.18 holds an item lock while it waits for a slow metadump reader (fixed in 1.6.19), which
 * stalls every request for keys under that lock, ours included. There the socket is read at full speed and the keys
 * wait here; from 1.6.19 on the socket is paused while two batches wait, so memory stays bounded.
 */
const PAUSABLE_FROM = 1_006_019;

export class KeyWalk {
  /** Full batches not handed over yet (one string each, keys joined by spaces: half the memory), and the one being filled. */
  private readonly pending: string[] = [];
  private batch: string[] = [];
  private count = 0;
  /** The start of a line cut by a chunk boundary. */
  private rest = '';
  /** memcached said END: every key is in pending or batch. */
  private ended = false;
  private done = false;
  /** hand() is handing batches over. */
  private handing = false;
  /** null until memcached's `version` answered: whether a paused reader is safe (see PAUSABLE_FROM). */
  private pausable: boolean | null = null;
  private timer: NodeJS.Timeout | undefined;
  private sock: net.Socket | undefined;
  private resolve: ((r: WalkResult) => void) | undefined;
  private readonly batchSize: number;
  private readonly idleTimeoutMs: number;
  private readonly keep: WalkOptions['keep'];

  constructor(
    private readonly target: WalkTarget,
    private readonly onBatch: (keys: string[]) => Promise<void> | void,
    opts: WalkOptions = {},
  ) {
    const { batchSize = 1000, idleTimeoutMs = 10_000, keep } = opts;
    this.batchSize = batchSize;
    this.idleTimeoutMs = idleTimeoutMs;
    this.keep = keep;
  }

  /** Walks the node once. */
  run(): Promise<WalkResult> {
    return new Promise((resolve) => {
      this.resolve = resolve;
      const { host, port, tls } = this.target;
      const sock = connectSocket(host, port, tls, () => {
        this.arm();
        sock.write('version\r\n');
      });
      this.sock = sock;
      sock.on('data', (d) => this.onData(sock, d));
      sock.on('error', (e) => this.finish({ ok: false, error: this.fail(e.message), retry: false }));
      sock.on('close', () => {
        if (!this.ended) this.finish({ ok: false, error: this.fail('connection closed before END'), retry: false });
      });
    });
  }

  /** Ends the walk: it fails with `error`. */
  abort(error: Error): void {
    this.finish({ ok: false, error: this.fail(error.message), retry: false });
  }

  private fail(what: string): Error {
    return new Error(`${this.target.name} cannot list its keys: ${what}`);
  }

  private finish(r: WalkResult): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.timer);
    this.sock?.destroy();
    this.resolve?.(r);
  }

  private arm(): void {
    clearTimeout(this.timer);
    this.timer = setTimeout(
      () => this.finish({ ok: false, error: this.fail(`no answer for ${this.idleTimeoutMs} ms`), retry: false }),
      this.idleTimeoutMs,
    );
  }

  private onData(sock: net.Socket, d: Buffer): void {
    this.arm();
    // A line cut by the chunk boundary is completed by the next chunk.
    const text = this.rest + d.toString('latin1');
    let at = 0;
    for (let nl = text.indexOf('\n'); nl >= 0 && !this.done && !this.ended; at = nl + 1, nl = text.indexOf('\n', at)) {
      this.onLine(sock, text.slice(at, text[nl - 1] === '\r' ? nl - 1 : nl));
    }
    this.rest = text.slice(at);
    if (this.pausable && this.pending.length >= 2 && !this.ended && !this.done) {
      clearTimeout(this.timer);
      sock.pause();
    }
  }

  private onLine(sock: net.Socket, line: string): void {
    if (this.pausable === null) {
      const v = /^VERSION (\d+)\.(\d+)\.(\d+)/.exec(line);
      this.pausable = !!v && Number(v[1]) * 1e6 + Number(v[2]) * 1e3 + Number(v[3]) >= PAUSABLE_FROM;
      sock.write('lru_crawler metadump hash\r\n');
    } else if (line.startsWith('key=')) {
      const sp = line.indexOf(' ');
      const key = decodeKey(line.slice(4, sp < 0 ? line.length : sp));
      // Keys this store builds are printable ASCII without spaces (isValidMemcachedKey): anything else is not ours.
      if (key !== undefined && isValidMemcachedKey(key) && (!this.keep || this.keep(key))) this.batch.push(key);
      if (this.batch.length >= this.batchSize) {
        this.queue(this.batch);
        this.batch = [];
      }
    } else if (line === 'END') {
      this.ended = true;
      clearTimeout(this.timer);
      sock.destroy();
      this.queue(this.batch);
    } else if (/^(BUSY|ERROR locked)/.test(line) && this.count === 0 && !this.batch.length) {
      this.finish({ ok: false, error: this.fail(line), retry: true });
    } else if (/^(ERROR|CLIENT_ERROR|SERVER_ERROR|BUSY)/.test(line)) {
      const old =
        /^(ERROR|CLIENT_ERROR bad)/.test(line) && this.count === 0 && !this.batch.length
          ? ' (lru_crawler metadump hash needs memcached 1.6.9 or later)'
          : '';
      this.finish({ ok: false, error: this.fail(line + old), retry: false });
    }
  }

  private queue(keys: string[]): void {
    if (!keys.length) return void this.hand();
    this.count += keys.length;
    this.pending.push(keys.join(' '));
    void this.hand();
  }

  /** Hands the waiting batches over, one at a time; a paused socket resumes once fewer than two wait. */
  private async hand(): Promise<void> {
    if (this.handing) return;
    this.handing = true;
    while (this.pending.length && !this.done) {
      const keys = this.pending.shift()!.split(' ');
      if (this.pending.length < 2 && this.sock!.isPaused() && !this.ended) {
        this.arm();
        this.sock!.resume();
      }
      try {
        await this.onBatch(keys);
      } catch (e) {
        return this.finish({ ok: false, error: e instanceof Error ? e : new Error(String(e)), retry: false });
      }
    }
    this.handing = false;
    if (this.ended && !this.pending.length) this.finish({ ok: true, value: this.count });
  }
}
