// Pluggable logger. Default: warnings and errors go to stderr, one line each and rate-limited per kind, so failures
// are visible without any setup and a failing node cannot flood the output; debug and info only with
// DEBUG=express-msm (which also lifts the rate limit). `logger: false` silences everything.
import { inspect } from 'util';

/** The `logger` option's shape (console, pino and winston loggers fit). Session ids arrive hashed. */
export interface Logger {
  /** Per-request detail: loads, saves, probes. */
  debug(msg: string, ...args: unknown[]): void;
  /** Events worth a line: repairs done, discovery changes. */
  info(msg: string, ...args: unknown[]): void;
  /** Failovers, relocations, lost backups, decode failures, lock timeouts. */
  warn(msg: string, ...args: unknown[]): void;
  /** Requests that failed: no node could store or load a session. */
  error(msg: string, ...args: unknown[]): void;
}

/** The `logger` option: a Logger, or false for none at all. */
export type LoggerOption = Logger | false;

/** At most one line per kind in this window (ms). */
export const LOG_INTERVAL_MS = 10_000;

/**
 * What makes two lines "the same" for rate limiting: the message with hashed ids (12 hex chars) and standalone
 * numbers (counts, ms, ports, addresses) replaced. Node ids such as `n1` stay, so each node's lines count apart.
 */
export function kindOf(msg: string): string {
  return msg.replace(/\b[0-9a-f]{12}\b/g, '#').replace(/\b\d+\b/g, '#');
}

/**
 * Per kind: the first line in a window passes, later ones are counted; the next line to pass after the window
 * carries that count. Kinds live until their window ends, and the table is bounded so odd messages cannot grow it.
 */
export class RateLimiter {
  private readonly kinds = new Map<string, { until: number; suppressed: number }>();

  constructor(
    private readonly intervalMs = LOG_INTERVAL_MS,
    private readonly now: () => number = Date.now,
    private readonly maxKinds = 1000,
  ) {}

  /** null: suppress this line; otherwise print it, noting how many lines of its kind were suppressed before it. */
  take(kind: string): { suppressed: number } | null {
    const t = this.now();
    const k = this.kinds.get(kind);
    if (k && t < k.until) {
      k.suppressed++;
      return null;
    }
    const suppressed = k?.suppressed ?? 0;
    if (!k && this.kinds.size >= this.maxKinds) this.prune(t);
    if (this.kinds.size < this.maxKinds) this.kinds.set(kind, { until: t + this.intervalMs, suppressed: 0 });
    return { suppressed };
  }

  private prune(t: number): void {
    // A kind past its window with nothing suppressed has nothing left to report.
    for (const [kind, k] of this.kinds) if (t >= k.until && k.suppressed === 0) this.kinds.delete(kind);
  }
}

function enabledByDebugEnv(): boolean {
  const d = process.env.DEBUG || '';
  return d.split(/[\s,]+/).some((p) => p === '*' || p === 'express-msm' || p === 'express-msm:*');
}

/** Extra arguments on the same line: one line per event, whatever is passed. */
function oneLine(args: unknown[]): string {
  return args
    .map((a) => (a instanceof Error ? a.message : typeof a === 'string' ? a : inspect(a, { breakLength: Infinity })))
    .map((s) => ` ${s.replace(/\s*\n\s*/g, ' ')}`)
    .join('');
}

export const silentLogger: Logger = { debug() {}, info() {}, warn() {}, error() {} };

/** `write` and `now` are for tests; the default writes to process.stderr. */
export function defaultLogger(
  write: (line: string) => void = (line) => process.stderr.write(line),
  limiter = new RateLimiter(),
): Logger {
  const verbose = enabledByDebugEnv();
  const print = (level: string, msg: string, args: unknown[], tail = '') =>
    write(`express-msm ${level} ${msg.replace(/\s*\n\s*/g, ' ')}${oneLine(args)}${tail}\n`);
  const always =
    (level: string) =>
    (msg: string, ...args: unknown[]) => {
      if (verbose) return print(level, msg, args);
      const pass = limiter.take(`${level} ${kindOf(msg)}`);
      if (!pass) return;
      const tail = pass.suppressed ? ` (${pass.suppressed} more like this suppressed)` : '';
      print(level, msg, args, tail);
    };
  const debugOnly =
    (level: string) =>
    (msg: string, ...args: unknown[]) => {
      if (verbose) print(level, msg, args);
    };
  return { debug: debugOnly('debug'), info: debugOnly('info'), warn: always('warn'), error: always('error') };
}

/** The logger the option asks for: the user's own, none (false), or the default. */
export function loggerFrom(option: LoggerOption | undefined): Logger {
  if (option === false) return silentLogger;
  return option ?? defaultLogger();
}

/** Session ids are credentials: log a short hash, never the id itself. */
export function hashId(id: string): string {
  return require('crypto').createHash('sha256').update(id).digest('hex').slice(0, 12);
}
