// Backup writes: after the response (sessionBackupAsync) or awaited up to sessionBackupTimeout. Either way the
// write is tracked, so close() can flush it, and a failure is counted by the task, never thrown to the request.
import type { Logger } from '../logger';

export class BackupRunner {
  private readonly pending = new Set<Promise<void>>();

  constructor(private readonly async: boolean, private readonly timeoutMs: number, private readonly logger: Logger) {}

  get size(): number {
    return this.pending.size;
  }

  /** Nothing returned when backups are asynchronous: the request has nothing to wait for. */
  run(task: () => Promise<void>): Promise<void> | undefined {
    const p: Promise<void> = task().then(undefined, (e: unknown) => this.logger.error(`backup task failed: ${(e as Error)?.message ?? e}`));
    this.pending.add(p);
    p.then(() => this.pending.delete(p));
    if (this.async) return undefined;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, this.timeoutMs)));
    return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
  }

  /** Waits for every queued backup, including ones queued while waiting. */
  async flush(): Promise<void> {
    while (this.pending.size) await Promise.allSettled([...this.pending]);
  }
}
