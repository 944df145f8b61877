// Backup writes and other after-response work: after the response (sessionBackupAsync) or awaited up to
// sessionBackupTimeout. Either way the task is tracked, so close() can flush it, and a failure is logged by the
// runner, never thrown to the request.
import type { Logger } from '../core/logger';
import { inBackground } from '../memcached/node-client';

export class BackupRunner {
  /** Tasks running; a counter and waiters rather than a set of promises: this runs on every request. */
  private running = 0;
  private idle: Array<() => void> = [];
  private readonly done = () => {
    if (--this.running === 0) for (const wake of this.idle.splice(0)) wake();
  };
  private readonly failed = (e: unknown) => {
    this.logger.error(`backup task failed: ${(e as Error)?.message ?? e}`);
    this.done();
  };

  /** async: backups run after the response (sessionBackupAsync); a mode may then issue them with begin/end instead of run. */
  constructor(
    readonly async: boolean,
    private readonly timeoutMs: number,
    private readonly logger: Logger,
  ) {}

  get size(): number {
    return this.running;
  }

  /** Nothing returned when backups are asynchronous: the request has nothing to wait for. */
  run(task: () => Promise<void>): Promise<void> | undefined {
    this.running++;
    let p: Promise<void>;
    try {
      // Asynchronous: nobody waits for the operations' answers, which may then come later (inBackground).
      p = this.async ? inBackground(task) : task();
    } catch (e) {
      p = Promise.reject(e);
    }
    if (this.async) {
      p.then(this.done, this.failed);
      return undefined;
    }
    const settled = p.then(this.done, this.failed);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.timeoutMs)));
    return Promise.race([settled, timeout]).finally(() => clearTimeout(timer));
  }

  /** A backup issued without run (a callback, no promise): tracked from here until `end` (close() flushes it). */
  begin(): void {
    this.running++;
  }

  /** The end of a backup begun with `begin`; an error it threw is logged as run logs a failed task's. */
  readonly end = (error?: unknown): void => (error === undefined ? this.done() : this.failed(error));

  /** Waits for every queued backup, including ones queued while waiting. */
  flush(): Promise<void> {
    return this.running === 0 ? Promise.resolve() : new Promise((resolve) => this.idle.push(resolve));
  }
}
