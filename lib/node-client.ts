// One memcached node. The only file that imports memjs: the store sees get/set/add/delete/touch with a deadline,
// and failures as values, never exceptions.
import * as memjs from 'memjs';
import { isValidMemcachedKey } from './keys';
import type { Logger } from './logger';

export type OpResult<T> = { ok: true; value: T } | { ok: false; error: Error };

export interface NodeClientOptions {
  id: string;
  host: string;
  port: number;
  /** ms */
  operationTimeout: number;
  username?: string;
  password?: string;
  logger: Logger;
  onKey?: (key: string) => void;
}

export class InvalidKeyError extends Error {}

export class NodeClient {
  readonly id: string;
  readonly address: string;
  private client: memjs.Client;
  private closed = false;
  /** Operations sent, by kind: feeds stats and the benchmark's cost model. */
  readonly ops = { get: 0, set: 0, add: 0, delete: 0, touch: 0, errors: 0, timeouts: 0 };

  constructor(private readonly opts: NodeClientOptions) {
    this.id = opts.id;
    this.address = `${opts.host.includes(':') ? `[${opts.host}]` : opts.host}:${opts.port}`;
    const seconds = opts.operationTimeout / 1000;
    const quiet = { log: (...a: unknown[]) => opts.logger.debug(`memjs ${this.id}: ${a.join(' ')}`) };
    this.client = memjs.Client.create(this.address, {
      // One attempt: failover is the store's decision (another node), not a blind retry on this one.
      retries: 1,
      retry_delay: 0,
      failover: false,
      timeout: seconds,
      conntimeout: seconds,
      keepAlive: true,
      logger: quiet as unknown as Console,
      ...(opts.username !== undefined ? { username: opts.username, password: opts.password } : {}),
    } as memjs.ClientOptions & memjs.ServerOptions);
  }

  get(key: string): Promise<OpResult<Buffer | null>> {
    return this.run('get', key, () => this.client.get(key).then((r) => r.value ?? null));
  }

  set(key: string, value: Buffer, expires: number): Promise<OpResult<boolean>> {
    return this.run('set', key, () => this.client.set(key, value, { expires }));
  }

  /** false when the key exists already (msm uses add for locks and pings). */
  add(key: string, value: Buffer, expires: number): Promise<OpResult<boolean>> {
    return this.run('add', key, () => this.client.add(key, value, { expires }));
  }

  /** false when the key was not there. */
  delete(key: string): Promise<OpResult<boolean>> {
    return this.run('delete', key, () => this.client.delete(key));
  }

  /** Extends the TTL without rewriting the value; false when the key is gone. */
  touch(key: string, expires: number): Promise<OpResult<boolean>> {
    return this.run('touch', key, () => this.client.touch(key, expires));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    try {
      this.client.close();
    } catch {
      /* already closed */
    }
  }

  private run<T>(kind: keyof NodeClient['ops'], key: string, op: () => Promise<T>): Promise<OpResult<T>> {
    this.opts.onKey?.(key);
    // Callers validate ids before building keys; this is the last line of defence, never reached by valid input.
    if (!isValidMemcachedKey(key)) {
      return Promise.resolve({ ok: false, error: new InvalidKeyError(`invalid memcached key (${key.length} chars)`) });
    }
    if (this.closed) return Promise.resolve({ ok: false, error: new Error(`node ${this.id} client is closed`) });
    this.ops[kind]++;
    return new Promise<OpResult<T>>((resolve) => {
      let done = false;
      // Backstop deadline: memjs has its own timeout, but not for every phase (connecting, half-open sockets).
      const timer = setTimeout(() => {
        if (done) return;
        done = true;
        this.ops.timeouts++;
        resolve({ ok: false, error: new Error(`memcached ${this.id} (${this.address}) ${kind} timed out after ${this.opts.operationTimeout} ms`) });
      }, this.opts.operationTimeout + 25);
      let p: Promise<T>;
      try {
        p = op();
      } catch (e) {
        p = Promise.reject(e);
      }
      p.then(
        (value) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          resolve({ ok: true, value });
        },
        (error: unknown) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          this.ops.errors++;
          const err = error instanceof Error ? error : new Error(String(error));
          resolve({ ok: false, error: new Error(`memcached ${this.id} (${this.address}) ${kind}: ${err.message}`) });
        },
      );
    });
  }
}
