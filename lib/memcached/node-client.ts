// One memcached node as the store sees it: get/set/add/delete/touch with a deadline, failures as values, never
// exceptions; and walks over its keys. Below it: the connection (connection.ts: memjs, SASL, reconnects, TLS), our
// framing of requests and answers (framing.ts: quiet commands, corking, deadlines) and the metadump walk
// (key-walk.ts).
import { isValidMemcachedKey } from './keys';
import { Connection, type NodeConnectionOptions } from './connection';
import {
  type Answer,
  type BackgroundDone,
  Framing,
  OP,
  type OpKind,
  type OpResult,
  STATUS,
  TimeoutError,
  requestHead,
  statusError,
} from './framing';
import { KeyWalk, type WalkOptions, type WalkResult } from './key-walk';

export type { OpResult, BackgroundDone } from './framing';
export { requestBuffer } from './framing';
export type { WalkOptions } from './key-walk';

/** Every successful background set's result: one object, never changed. */
const STORED: OpResult<boolean> = Object.freeze({ ok: true, value: true });

export interface NodeClientOptions extends NodeConnectionOptions {
  id: string;
  /** @internal Test hook: every key before it is sent. */
  onKey?: (key: string) => void;
}

export class InvalidKeyError extends Error {}

/** Nesting depth of inBackground: operations issued while it is above 0 are background operations. */
let background = 0;

/**
 * Runs `task`; the operations it issues synchronously are background ones: nobody waits for their answers (an
 * asynchronous backup). A turn that ends with background quiet commands leaves them quiet, and their success is
 * learnt from the connection's next answer: the next request's, or a NOOP sent CONFIRM_MS later. So a request whose
 * only writes are backups costs no answer to read (framing.ts: endOfTurn).
 */
export function inBackground<T>(task: () => T): T {
  background++;
  try {
    return task();
  } finally {
    background--;
  }
}

export class NodeClient {
  readonly id: string;
  readonly address: string;
  /** Operations sent, by kind: feeds stats and the benchmark's cost model. */
  readonly ops = { get: 0, set: 0, add: 0, delete: 0, touch: 0, errors: 0, timeouts: 0, maintenance: 0, noop: 0 };
  private readonly connection: Connection;
  private readonly framing: Framing;
  /** Key walks in progress (their own sockets): abortWalks() ends them. */
  private readonly walks = new Set<KeyWalk>();

  constructor(private readonly opts: NodeClientOptions) {
    this.id = opts.id;
    this.address = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
    this.connection = new Connection(opts, opts.id);
    this.framing = new Framing(this.connection, opts.operationTimeout, this.ops);
  }

  /** `maintenance`: probes and repairs, counted apart from the operations requests cause. */
  get(key: string, maintenance = false): Promise<OpResult<Buffer | null>> {
    return this.request(maintenance ? 'maintenance' : 'get', OP.get, key, undefined, undefined, undefined, valueOrNull);
  }

  /**
   * Two keys of one node in one request (GETQ `a`, GET `b`: a multi-get), answered together: memcached answers `a`
   * only when it holds it, and the answer to `b` closes the request. msm's session and its validity record are read
   * this way: one request, one promise, no answer for a missing session.
   */
  getPair(a: string, b: string): Promise<[OpResult<Buffer | null>, OpResult<Buffer | null>]> {
    return new Promise((resolve) => {
      let first: OpResult<Buffer | null> | undefined;
      let second: OpResult<Buffer | null> | undefined;
      // Answers come in request order, so `first` is known by the time `second` is; both checked all the same.
      const settle = () => first && second && resolve([first, second]);
      this.requestThen('get', OP.getq, a, undefined, undefined, undefined, valueOrMiss, (r) => {
        first = r;
        settle();
      });
      this.requestThen('get', OP.get, b, undefined, undefined, undefined, valueOrNull, (r) => {
        second = r;
        settle();
      });
    });
  }

  /**
   * SETQ: memcached answers a quiet command only when it fails; success is known from the next answer on the
   * connection (a turn's last request becomes an answered one, or a NOOP follows: see endOfTurn). Same result,
   * fewer answers.
   */
  set(key: string, value: Buffer, expires: number, maintenance = false): Promise<OpResult<boolean>> {
    return this.request(maintenance ? 'maintenance' : 'set', OP.setq, key, expires, value, undefined, stored);
  }

  /**
   * set from a background task, answered through `done(result, a, b, sentAt)` instead of a promise: sticky's
   * asynchronous backup, one per changed session, costs no promise, task or closure (one shared answer, one frozen
   * result for every success). `done` runs at once when the key is invalid or the client closed.
   */
  setInBackground<A, B>(key: string, value: Buffer, expires: number, done: BackgroundDone<A, B>, a: A, b: B): void {
    const refused = this.refused(key);
    if (refused) return done(refused, a, b, Date.now());
    this.ops.set++;
    this.framing.send(
      'set',
      OP.setq,
      requestHead(OP.setq, key, this.framing.nextSeq(), expires, value.length),
      value,
      false,
      this.answerBackground,
      true,
      done,
      a,
      b,
    );
  }

  /** Answers every background set: the result, and when the set was sent (its deadline less the timeout). */
  private readonly answerBackground: Answer = (error, status, _value, _cas, op) => {
    const r = error
      ? this.failed(op.kind, error, error instanceof TimeoutError)
      : status === STATUS.ok
        ? STORED
        : this.failed(op.kind, statusError(status));
    op.done!(r, op.a, op.b, op.deadline - this.opts.operationTimeout);
  };

  /** The value with its CAS token (for cas()), or null when missing. */
  gets(key: string, maintenance = false): Promise<OpResult<{ value: Buffer; cas: Buffer } | null>> {
    return this.request(maintenance ? 'maintenance' : 'get', OP.get, key, undefined, undefined, undefined, withCas);
  }

  /** set only if the item is unchanged since gets() returned `cas`; false when it changed or is gone. */
  cas(key: string, value: Buffer, expires: number, cas: Buffer, maintenance = false): Promise<OpResult<boolean>> {
    return this.request(maintenance ? 'maintenance' : 'set', OP.set, key, expires, value, cas, storedIfUnchanged);
  }

  /** false when the key exists already (msm uses add for locks and pings). */
  add(key: string, value: Buffer, expires: number, maintenance = false): Promise<OpResult<boolean>> {
    return this.request(maintenance ? 'maintenance' : 'add', OP.add, key, expires, value, undefined, added);
  }

  /** add that returns the item's CAS (null when the key exists already): a lock released with delete(key, cas). */
  addWithCas(key: string, value: Buffer, expires: number): Promise<OpResult<Buffer | null>> {
    return this.request('add', OP.add, key, expires, value, undefined, casOfAdd);
  }

  /** false when the key was not there, or (with `cas`) holds another item than the one `cas` names. DELETEQ, as set. */
  delete(key: string, cas?: Buffer): Promise<OpResult<boolean>> {
    return this.request('delete', OP.deleteq, key, undefined, undefined, cas, deleted);
  }

  /** Extends the TTL without rewriting the value; false when the key is gone. */
  touch(key: string, expires: number): Promise<OpResult<boolean>> {
    return this.request('touch', OP.touch, key, expires, undefined, undefined, found);
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
    if (this.opts.username !== undefined) {
      return {
        ok: false,
        error: new Error(
          `memcached ${this.id} (${this.address}) cannot list its keys: a SASL node speaks only the binary protocol, which has no lru_crawler metadump`,
        ),
      };
    }
    // One crawl at a time per server: another client's crawl answers BUSY, a hash table being resized "locked".
    for (let attempt = 0; ; attempt++) {
      const r = await this.metadump(onBatch, opts);
      if (r.ok) return r;
      if (!r.retry || attempt >= 40) return { ok: false, error: r.error };
      await new Promise((res) => setTimeout(res, Math.min(50 * (attempt + 1), 500)));
    }
  }

  private async metadump(onBatch: (keys: string[]) => Promise<void> | void, opts: WalkOptions): Promise<WalkResult> {
    this.ops.maintenance++;
    const { host, port, tls } = this.opts;
    const walk = new KeyWalk({ host, port, tls, name: `memcached ${this.id} (${this.address})` }, onBatch, opts);
    this.walks.add(walk);
    try {
      return await walk.run();
    } finally {
      this.walks.delete(walk);
    }
  }

  /** Ends every key walk in progress on this node (it fails with `reason`): a closing store does not wait for them. */
  abortWalks(reason = `node ${this.id} client is closed`): void {
    for (const walk of [...this.walks]) walk.abort(new Error(reason));
  }

  /** Fails operations in flight and destroys the connection (connection.ts says why memjs's close() is not enough). */
  close(): void {
    if (this.connection.closed) return;
    this.connection.closed = true;
    this.framing.stopConfirming();
    this.abortWalks();
    const error = new Error(`node ${this.id} client is closed`);
    this.framing.failAll(error);
    // No new socket from now on, and the current one destroyed.
    this.connection.destroy(error);
  }

  /**
   * One operation: the request built in one buffer, written to memjs's socket, answered from our response queue.
   * `map` turns the response status into the result; undefined means the status is an error.
   */
  private request<T>(
    kind: OpKind,
    opcode: number,
    key: string,
    expires: number | undefined,
    value: Buffer | undefined,
    cas: Buffer | undefined,
    map: (status: number, value: Buffer | null, cas: Buffer | null) => T | undefined,
  ): Promise<OpResult<T>> {
    return new Promise<OpResult<T>>((resolve) =>
      this.requestThen(kind, opcode, key, expires, value, cas, map, resolve),
    );
  }

  /** request, answered through `done` (at once when the key is invalid or the client closed). */
  private requestThen<T>(
    kind: OpKind,
    opcode: number,
    key: string,
    expires: number | undefined,
    value: Buffer | undefined,
    cas: Buffer | undefined,
    map: (status: number, value: Buffer | null, cas: Buffer | null) => T | undefined,
    done: (r: OpResult<T>) => void,
  ): void {
    const refused = this.refused(key);
    if (refused) return done(refused);
    this.ops[kind]++;
    this.framing.send(
      kind,
      opcode,
      requestHead(opcode, key, this.framing.nextSeq(), expires, value?.length, cas),
      value,
      map === withCas || map === casOfAdd,
      (error, status, v, c) => {
        if (error) return done(this.failed(kind, error, error instanceof TimeoutError));
        const result = map(status, v, c);
        done(result === undefined ? this.failed(kind, statusError(status)) : { ok: true, value: result });
      },
      background > 0,
    );
  }

  /** Why an operation on `key` is not sent: an invalid key or a closed client. undefined: it may be. */
  private refused(key: string): { ok: false; error: Error } | undefined {
    this.opts.onKey?.(key);
    // Callers validate ids before building keys; this is the last line of defence, never reached by valid input.
    if (!isValidMemcachedKey(key))
      return { ok: false, error: new InvalidKeyError(`invalid memcached key (${key.length} chars)`) };
    if (this.connection.closed) return { ok: false, error: new Error(`node ${this.id} client is closed`) };
    return undefined;
  }

  private failed(kind: OpKind, error: Error, timedOut = false): { ok: false; error: Error } {
    if (!timedOut) this.ops.errors++;
    return { ok: false, error: new Error(`memcached ${this.id} (${this.address}) ${kind}: ${error.message}`) };
  }
}

// Status -> result, per operation; undefined: the status is an error.
function valueOrNull(status: number, value: Buffer | null): Buffer | null | undefined {
  return status === STATUS.ok ? (value ?? Buffer.alloc(0)) : status === STATUS.notFound ? null : undefined;
}

/** GETQ: no value with an OK status is a miss (a later answer passed it; or GET's not-found once it was answered). */
function valueOrMiss(status: number, value: Buffer | null): Buffer | null | undefined {
  return status === STATUS.ok || status === STATUS.notFound ? value : undefined;
}

function stored(status: number): boolean | undefined {
  return status === STATUS.ok ? true : undefined;
}

function added(status: number): boolean | undefined {
  return status === STATUS.ok ? true : status === STATUS.exists ? false : undefined;
}

function withCas(
  status: number,
  value: Buffer | null,
  cas: Buffer | null,
): { value: Buffer; cas: Buffer } | null | undefined {
  return status === STATUS.ok
    ? { value: value ?? Buffer.alloc(0), cas: cas! }
    : status === STATUS.notFound
      ? null
      : undefined;
}

/** set with CAS: false when the item changed or is gone. */
function storedIfUnchanged(status: number): boolean | undefined {
  return status === STATUS.ok ? true : status === STATUS.exists || status === STATUS.notFound ? false : undefined;
}

function casOfAdd(status: number, _value: Buffer | null, cas: Buffer | null): Buffer | null | undefined {
  return status === STATUS.ok ? cas : status === STATUS.exists ? null : undefined;
}

/** delete: true when deleted; false when not there or (with a CAS) another item is. */
function deleted(status: number): boolean | undefined {
  return status === STATUS.ok ? true : status === STATUS.notFound || status === STATUS.exists ? false : undefined;
}

/** touch: true when the key was there. */
function found(status: number): boolean | undefined {
  return status === STATUS.ok ? true : status === STATUS.notFound ? false : undefined;
}
