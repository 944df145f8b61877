// Counters and timings (msm's Statistics). Knows nothing else.
export class Statistics {
  requestsWithSession = 0;
  requestsWithoutSession = 0;
  requestsWithTomcatFailover = 0;
  requestsWithMemcachedFailover = 0;
  requestsWithBackupFailure = 0;
  requestsWithoutSessionModification = 0;
  sessionsCreated = 0;
  sessionsRelocated = 0;
  sessionsDestroyed = 0;
  sessionsExpired = 0;
  decodeFailures = 0;
  /** Items under a session key without express-msm's header (e.g. a Tomcat msm session on shared nodes): left in place. */
  foreignItems = 0;
  invalidSessionIds = 0;
  primaryWriteFailures = 0;
  backupsSkippedNoNode = 0;
  backupsRewritten = 0;
  /** Non-sticky read-repair: a primary that held an older copy, or none, was written from the newest backup. */
  primariesRepaired = 0;
  /** Proactive repairs run for a node that came back, and the copies they wrote. */
  nodeRepairs = 0;
  sessionsRepaired = 0;
  /** Drains of a node that left the list: started, ended (done, stopped or failed); sessions checked, copies written. */
  nodeDrains = 0;
  nodeDrainsDone = 0;
  drainChecked = 0;
  drainCopied = 0;
  /** Re-replications run for a node that stayed down, and the copies they wrote. */
  nodeReReplications = 0;
  sessionsReReplicated = 0;
  sessionsRewrittenAfterMiss = 0;
  localHits = 0;
  localMisses = 0;
  localEvictions = 0;
  locksAcquired = 0;
  lockTimeouts = 0;
  lockWaitMsTotal = 0;
  lockReleaseSkipped = 0;
  requestsIgnored = 0;
  readOnlyPatternsLearnt = 0;
  readOnlyRequestsUnlocked = 0;
  /** Middleware locking: node down or `add` failed, the session was used without the memcached lock. */
  lockErrors = 0;
  /** lockTimeoutAction 'reject': requests answered 503. */
  lockRejections = 0;
  readOnlyPatternsBlacklisted = 0;
  /** indexBy: an index change that no copy took (the session is stored; destroyAllOf may miss it). */
  indexWriteFailures = 0;
  private readonly timings = new Map<string, { count: number; total: number; max: number }>();

  time(name: string, ms: number): void {
    let t = this.timings.get(name);
    if (!t) this.timings.set(name, (t = { count: 0, total: 0, max: 0 }));
    t.count++;
    t.total += ms;
    if (ms > t.max) t.max = ms;
  }

  counters(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(this)) if (typeof v === 'number') out[k] = v;
    return out;
  }

  timingSnapshot(): Record<string, { count: number; avgMs: number; maxMs: number }> {
    const out: Record<string, { count: number; avgMs: number; maxMs: number }> = {};
    for (const [k, t] of this.timings)
      out[k] = { count: t.count, avgMs: t.count ? t.total / t.count : 0, maxMs: t.max };
    return out;
  }
}
