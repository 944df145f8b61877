// One memcached node. The only file that uses memjs (lib/tls.ts makes its servers): the store sees get/set/add/delete/touch with a deadline,
// and failures as values, never exceptions.
import * as memjs from 'memjs';
import type { Socket } from 'net';
import type { ConnectionOptions } from 'tls';
import { isValidMemcachedKey } from './keys';
import type { Logger } from './logger';
import { connectSocket, memjsServer } from './tls';

export type OpResult<T> = { ok: true; value: T } | { ok: false; error: Error };

export interface NodeClientOptions {
  id: string;
  host: string;
  port: number;
  /** ms */
  operationTimeout: number;
  username?: string;
  password?: string;
  /** Set: every socket to the node is TLS with these options. */
  tls?: ConnectionOptions;
  logger: Logger;
  onKey?: (key: string) => void;
  /** An established connection closed without close(): the node was killed, restarted, or dropped us. */
  onConnectionLost?: () => void;
}

export class InvalidKeyError extends Error {}

export class NodeClient {
  readonly id: string;
  readonly address: string;
  private client: memjs.Client;
  private closed = false;
  /** The memjs socket whose close is reported (onConnectionLost). */
  private watched: Socket | undefined;
  /** Operations sent, by kind: feeds stats and the benchmark's cost model. */
  readonly ops = { get: 0, set: 0, add: 0, delete: 0, touch: 0, errors: 0, timeouts: 0, maintenance: 0 };

  constructor(private readonly opts: NodeClientOptions) {
    this.id = opts.id;
    this.address = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
    const seconds = opts.operationTimeout / 1000;
    const quiet = { log: (...a: unknown[]) => opts.logger.debug(`memjs ${this.id}: ${a.join(' ')}`) };
    const options = {
      // One retry, at once: a socket broken by a node restart fails its first operation, and that alone must not
      // move sessions to another node. Timeouts cannot stack: run() enforces one operationTimeout for both tries.
      retries: 2,
      retry_delay: 0,
      failover: false,
      timeout: seconds,
      conntimeout: seconds,
      keepAlive: true,
      logger: quiet as unknown as Console,
      ...(opts.username !== undefined ? { username: opts.username, password: opts.password } : {}),
    } as memjs.ClientOptions & memjs.ServerOptions;
    this.client = new memjs.Client([memjsServer(opts.host, opts.port, options, opts.tls)], options);
  }

  /** `maintenance`: probes and repairs, counted apart from the operations requests cause. */
  get(key: string, maintenance = false): Promise<OpResult<Buffer | null>> {
    return this.request(maintenance ? 'maintenance' : 'get', OP.get, key, undefined, undefined, (status, r) =>
      status === STATUS.ok ? r.val : status === STATUS.notFound ? null : undefined);
  }

  set(key: string, value: Buffer, expires: number, maintenance = false): Promise<OpResult<boolean>> {
    return this.request(maintenance ? 'maintenance' : 'set', OP.set, key, expires, value, (status) => (status === STATUS.ok ? true : undefined));
  }

  /** The value with its CAS token (for cas()), or null when missing. */
  gets(key: string): Promise<OpResult<{ value: Buffer; cas: Buffer } | null>> {
    return this.request('get', OP.get, key, undefined, undefined, (status, r) =>
      status === STATUS.ok ? { value: r.val, cas: Buffer.from(r.header.cas) } : status === STATUS.notFound ? null : undefined);
  }

  /** set only if the item is unchanged since gets() returned `cas`; false when it changed or is gone. */
  cas(key: string, value: Buffer, expires: number, cas: Buffer): Promise<OpResult<boolean>> {
    return this.request('set', OP.set, key, expires, value, (status) =>
      status === STATUS.ok ? true : status === STATUS.exists || status === STATUS.notFound ? false : undefined, cas);
  }

  /** false when the key exists already (msm uses add for locks and pings). */
  add(key: string, value: Buffer, expires: number, maintenance = false): Promise<OpResult<boolean>> {
    return this.request(maintenance ? 'maintenance' : 'add', OP.add, key, expires, value, (status) =>
      status === STATUS.ok ? true : status === STATUS.exists ? false : undefined);
  }

  /**
   * Streams every key on the node to `onBatch`, `batchSize` keys at a time (one batch at a time), decoded (metadump
   * URL-encodes them). Resolves with the number of keys handed over.
   * `lru_crawler metadump hash` walks the hash table: every item that exists for the whole walk is listed. The LRU
   * walk (`metadump all`) is not complete: it silently skips items a worker holds at that moment (a get or touch in
   * flight) and items the LRU maintainer moves between HOT/WARM/COLD behind it (docs/reliability.md). Text protocol
   * on its own socket (memjs speaks binary only); memcached >= 1.6.9; not on SASL nodes (binary protocol only).
   */
  async walkKeys(onBatch: (keys: string[]) => Promise<void> | void, opts: WalkOptions = {}): Promise<OpResult<number>> {
    const { batchSize = 1000, idleTimeoutMs = 10_000, keep } = opts;
    if (this.opts.username !== undefined) {
      return { ok: false, error: new Error(`memcached ${this.id} (${this.address}) cannot list its keys: a SASL node speaks only the binary protocol, which has no lru_crawler metadump`) };
    }
    // One crawl at a time per server: another client's crawl answers BUSY, a hash table being resized "locked".
    for (let attempt = 0; ; attempt++) {
      const r = await this.metadump(onBatch, batchSize, idleTimeoutMs, keep);
      if (r.ok) return r;
      if (!r.retry || attempt >= 40) return { ok: false, error: r.error };
      await new Promise((res) => setTimeout(res, Math.min(50 * (attempt + 1), 500)));
    }
  }

  private metadump(onBatch: (keys: string[]) => Promise<void> | void, batchSize: number, idleTimeoutMs: number, keep: WalkOptions['keep']):
    Promise<{ ok: true; value: number } | { ok: false; error: Error; retry: boolean }> {
    this.ops.maintenance++;
    const fail = (what: string) => new Error(`memcached ${this.id} (${this.address}) cannot list its keys: ${what}`);
    return new Promise((resolve) => {
      /** Full batches not handed over yet (one string each, keys joined by spaces: half the memory), and the one being filled. */
      const pending: string[] = [];
      let batch: string[] = [];
      let count = 0;
      let rest = '';
      let ended = false;
      let done = false;
      let handing = false;
      /** null until memcached's `version` answered: whether a paused reader is safe (see below). */
      let pausable: boolean | null = null;
      let timer: NodeJS.Timeout | undefined;
      const sock = connectSocket(this.opts.host, this.opts.port, this.opts.tls, () => {
        arm();
        sock.write('version\r\n');
      });
      const finish = (r: { ok: true; value: number } | { ok: false; error: Error; retry: boolean }) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve(r);
      };
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => finish({ ok: false, error: fail(`no answer for ${idleTimeoutMs} ms`), retry: false }), idleTimeoutMs);
      };
      // memcached 1.6.9-1.6.18 holds an item lock while it waits for a slow metadump reader (fixed in 1.6.19), which
      // stalls every request for keys under that lock, ours included. There the socket is read at full speed and
      // the keys wait here; from 1.6.19 on the socket is paused while two batches wait, so memory stays bounded.
      const hand = async () => {
        if (handing) return;
        handing = true;
        while (pending.length && !done) {
          const keys = pending.shift()!.split(' ');
          if (pending.length < 2 && sock.isPaused() && !ended) {
            arm();
            sock.resume();
          }
          try {
            await onBatch(keys);
          } catch (e) {
            return finish({ ok: false, error: e instanceof Error ? e : new Error(String(e)), retry: false });
          }
        }
        handing = false;
        if (ended && !pending.length) finish({ ok: true, value: count });
      };
      const queue = (keys: string[]) => {
        if (!keys.length) return void hand();
        count += keys.length;
        pending.push(keys.join(' '));
        void hand();
      };
      const onLine = (line: string) => {
        if (pausable === null) {
          const v = /^VERSION (\d+)\.(\d+)\.(\d+)/.exec(line);
          pausable = !!v && Number(v[1]) * 1e6 + Number(v[2]) * 1e3 + Number(v[3]) >= 1_006_019;
          sock.write('lru_crawler metadump hash\r\n');
        } else if (line.startsWith('key=')) {
          const sp = line.indexOf(' ');
          const key = decodeKey(line.slice(4, sp < 0 ? line.length : sp));
          // Keys this store builds are printable ASCII without spaces (isValidMemcachedKey): anything else is not ours.
          if (key !== undefined && isValidMemcachedKey(key) && (!keep || keep(key))) batch.push(key);
          if (batch.length >= batchSize) {
            queue(batch);
            batch = [];
          }
        } else if (line === 'END') {
          ended = true;
          clearTimeout(timer);
          sock.destroy();
          queue(batch);
        } else if (/^(BUSY|ERROR locked)/.test(line) && count === 0 && !batch.length) {
          finish({ ok: false, error: fail(line), retry: true });
        } else if (/^(ERROR|CLIENT_ERROR|SERVER_ERROR|BUSY)/.test(line)) {
          const old = /^(ERROR|CLIENT_ERROR bad)/.test(line) && count === 0 && !batch.length ? ' (lru_crawler metadump hash needs memcached 1.6.9 or later)' : '';
          finish({ ok: false, error: fail(line + old), retry: false });
        }
      };
      sock.on('data', (d) => {
        arm();
        // A line cut by the chunk boundary is completed by the next chunk.
        const text = rest + d.toString('latin1');
        let at = 0;
        for (let nl = text.indexOf('\n'); nl >= 0 && !done && !ended; at = nl + 1, nl = text.indexOf('\n', at)) {
          onLine(text.slice(at, text[nl - 1] === '\r' ? nl - 1 : nl));
        }
        rest = text.slice(at);
        if (pausable && pending.length >= 2 && !ended && !done) {
          clearTimeout(timer);
          sock.pause();
        }
      });
      sock.on('error', (e) => finish({ ok: false, error: fail(e.message), retry: false }));
      sock.on('close', () => {
        if (!ended) finish({ ok: false, error: fail('connection closed before END'), retry: false });
      });
    });
  }

  /** false when the key was not there. */
  delete(key: string): Promise<OpResult<boolean>> {
    return this.request('delete', OP.delete, key, undefined, undefined, found);
  }

  /** Extends the TTL without rewriting the value; false when the key is gone. */
  touch(key: string, expires: number): Promise<OpResult<boolean>> {
    return this.request('touch', OP.touch, key, expires, undefined, found);
  }

  /**
   * One request through memjs's documented `perform` (connection, SASL, retries, timeouts and response parsing stay
   * memjs's), with the request built here in one buffer: memjs's own set/add build five or six (measured: about
   * 16 µs of CPU per set through memjs's set, 9-13 µs through perform). `answer` maps the response status to the
   * result; undefined means the status is an error.
   */
  private request<T>(kind: keyof NodeClient['ops'], opcode: number, key: string, expires: number | undefined, value: Buffer | undefined,
    answer: (status: number, r: Response) => T | undefined, cas?: Buffer): Promise<OpResult<T>> {
    return this.run<T>(kind, key, (cb) => {
      const client = this.client as unknown as MemjsInternals;
      client.incrSeq();
      const seq = client.seq;
      client.perform(key, requestBuffer(opcode, key, seq, expires, value, cas), seq, (err, r) => {
        if (err || !r) return cb(err ?? new Error('no response'), undefined as T);
        const v = answer(r.header.status, r);
        cb(v === undefined ? statusError(r.header.status) : null, v as T);
      });
    });
  }

  /**
   * Destroys the connection and fails operations in flight. memjs's own close() only ends the socket: one still
   * connecting, or a failed operation's retry, opens a new one that keeps the process alive.
   */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const error = new Error(`node ${this.id} client is closed`);
    for (const server of (this.client as unknown as { servers: MemjsServer[] }).servers) {
      server.sock = () => server.error(error);
      server.error(error);
    }
  }

  /** Reports the close of an established memjs connection (see onConnectionLost); never of one that failed to connect. */
  private watchConnection(): void {
    const sock = (this.client as unknown as { servers: MemjsServer[] }).servers[0]?._socket;
    if (!sock || sock === this.watched || !this.opts.onConnectionLost) return;
    this.watched = sock;
    let established = !sock.connecting;
    if (!established) sock.once('connect', () => (established = true));
    sock.once('close', () => {
      if (established && !this.closed) this.opts.onConnectionLost!();
    });
  }

  /**
   * memjs writes every operation with its own socket.write (a syscall each; Nagle then delays the rest). A request
   * sends 2-4 operations to a node in the same tick: cork the socket until the tick ends so they leave together.
   */
  private corkForThisTick(): void {
    const server = (this.client as unknown as { servers?: Array<{ _socket?: import('net').Socket; connected?: boolean }> }).servers?.[0];
    const sock = server?._socket;
    if (!sock || !server!.connected || sock.writableCorked || sock.destroyed) return;
    sock.cork();
    process.nextTick(() => sock.uncork());
  }

  /** memjs's callback API: its promise API would add a promise and a result object per operation. */
  private run<T>(kind: keyof NodeClient['ops'], key: string, op: (cb: (err: Error | null | undefined, value: T) => void) => void): Promise<OpResult<T>> {
    this.opts.onKey?.(key);
    // Callers validate ids before building keys; this is the last line of defence, never reached by valid input.
    if (!isValidMemcachedKey(key)) {
      return Promise.resolve({ ok: false, error: new InvalidKeyError(`invalid memcached key (${key.length} chars)`) });
    }
    if (this.closed) return Promise.resolve({ ok: false, error: new Error(`node ${this.id} client is closed`) });
    this.ops[kind]++;
    this.corkForThisTick();
    return new Promise<OpResult<T>>((resolve) => {
      let done = false;
      // Backstop deadline: memjs has its own timeout, but not for every phase (connecting, half-open sockets).
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        this.ops.timeouts++;
        resolve({ ok: false, error: new Error(`memcached ${this.id} (${this.address}) ${kind} timed out after ${this.opts.operationTimeout} ms`) });
      }, this.opts.operationTimeout + 25);
      const finish = (error: unknown, value?: T) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (!error) return resolve({ ok: true, value: value as T });
        this.ops.errors++;
        const err = error instanceof Error ? error : new Error(String(error));
        resolve({ ok: false, error: new Error(`memcached ${this.id} (${this.address}) ${kind}: ${err.message}`) });
      };
      try {
        op((err, value) => finish(err, value));
      } catch (e) {
        finish(e);
      }
      this.watchConnection();
    });
  }
}

export interface WalkOptions {
  /** Keys per batch handed to onBatch. */
  batchSize?: number;
  /** ms without data from memcached before the walk fails. */
  idleTimeoutMs?: number;
  /** Only these keys are kept and handed over (fewer keys wait in memory). */
  keep?: (key: string) => boolean;
}

/** A metadump key (URL-encoded by memcached); undefined for bytes that are not UTF-8 (never one of ours). */
function decodeKey(encoded: string): string | undefined {
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}

/** memcached binary protocol (protocol_binary.h). */
const OP = { get: 0x00, set: 0x01, add: 0x02, delete: 0x04, touch: 0x1c } as const;
const STATUS = { ok: 0x00, notFound: 0x01, exists: 0x02 } as const;
const STATUS_NAMES: Record<number, string> = {
  0x01: 'key not found', 0x02: 'key exists', 0x03: 'value too large', 0x04: 'invalid arguments',
  0x05: 'item not stored', 0x20: 'authentication error', 0x81: 'unknown command', 0x82: 'out of memory',
  0x85: 'busy', 0x86: 'temporary failure',
};

function statusError(status: number): Error {
  return new Error(`${STATUS_NAMES[status] ?? 'status'} (0x${status.toString(16)})`);
}

/** delete and touch: true when the key was there. */
function found(status: number): boolean | undefined {
  return status === STATUS.ok ? true : status === STATUS.notFound ? false : undefined;
}

/** What memjs hands a perform callback. */
interface Response {
  header: { status: number; cas: Buffer };
  val: Buffer;
}

/** A memjs Server: `sock` opens or reuses the connection, `error` destroys it and fails every waiting operation. */
interface MemjsServer {
  _socket?: Socket;
  sock(sasl: boolean, go: (s: Socket) => void): void;
  error(err: Error): void;
}

/** memjs's Client as `perform` needs it (`seq` is the sequence number incrSeq just advanced). */
interface MemjsInternals {
  seq: number;
  incrSeq(): void;
  perform(key: string, request: Buffer, seq: number, callback: (err: Error | null, r?: Response) => void): void;
}

/**
 * A binary-protocol request: 24-byte header, extras (set/add: flags + expiration; touch: expiration), key, value.
 * Keys are validated ASCII before they get here, so their length in bytes is their length in characters.
 */
export function requestBuffer(opcode: number, key: string, seq: number, expires: number | undefined, value: Buffer | undefined,
  cas?: Buffer): Buffer {
  const extrasLength = expires === undefined ? 0 : value === undefined ? 4 : 8;
  const valueLength = value?.length ?? 0;
  const b = Buffer.allocUnsafe(24 + extrasLength + key.length + valueLength);
  b[0] = 0x80; // request magic
  b[1] = opcode;
  b.writeUInt16BE(key.length, 2);
  b[4] = extrasLength;
  b[5] = 0; // data type
  b.writeUInt16BE(0, 6); // vbucket
  b.writeUInt32BE(extrasLength + key.length + valueLength, 8);
  b.writeUInt32BE(seq >>> 0, 12); // opaque: memjs matches the response by it
  if (cas?.length === 8) cas.copy(b, 16);
  else b.fill(0, 16, 24); // CAS 0: unconditional
  let at = 24;
  if (extrasLength === 8) {
    b.writeUInt32BE(0, at); // flags
    at += 4;
  }
  if (extrasLength) {
    b.writeUInt32BE(expires! >>> 0, at);
    at += 4;
  }
  at += b.write(key, at, 'latin1');
  if (value) value.copy(b, at);
  return b;
}
