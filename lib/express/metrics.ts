// Optional Prometheus exporter: every value is read from store.stats() at scrape time (collect callbacks), so the
// request path pays nothing. prom-client is an optional peer dependency, required only when this is called.
import type { MemcachedStore } from './store';
import { ConfigError } from '../core/errors';

/** The part of a prom-client Registry used here (structural, so prom-client's types are not needed by users). */
/** What registerMetrics needs of a prom-client Registry. */
export interface MetricsRegistry {
  /** prom-client's Registry.registerMetric. */
  registerMetric(metric: unknown): void;
  /** prom-client's Registry.removeSingleMetric. */
  removeSingleMetric(name: string): void;
}

/** Options of registerMetrics. */
export interface RegisterMetricsOptions {
  /** Metric name prefix; change it to register two stores in one registry. Default `express_msm_`. */
  prefix?: string | undefined;
}

/** What registerMetrics returns. */
export interface RegisteredMetrics {
  /** Names of the metrics registered. */
  names: string[];
  /** Removes them from the registry again. */
  unregister(): void;
}

function loadPromClient(): any {
  try {
    return require('prom-client');
  } catch (e) {
    throw ConfigError.saying(
      `express-msm: registerMetrics needs the optional peer dependency prom-client (npm install prom-client): ${(e as Error)?.message ?? e}`,
      { cause: e },
    );
  }
}

const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();

type Stats = ReturnType<MemcachedStore['stats']>;

/** What the metric groups below are defined with. */
interface MetricDefinitions {
  prom: any;
  prefix: string;
  /** Registers one metric (a prom-client class and its configuration) and remembers its name. */
  add(Kind: any, config: Record<string, unknown>): unknown;
  /** store.stats(), read once per scrape however many metrics collect from it. */
  stats(): Stats;
}

/**
 * Registers gauges and counters that read `store.stats()` when scraped: every msm counter (as `<prefix><name>_total`),
 * pending backups, per-node availability (1/0), per-node operations and errors, and operation timings.
 * `register` defaults to prom-client's global registry.
 */
export function registerMetrics(
  store: MemcachedStore,
  register?: MetricsRegistry,
  options: RegisterMetricsOptions = {},
): RegisteredMetrics {
  const prom = loadPromClient();
  const registry: MetricsRegistry = register ?? prom.register;
  const prefix = options.prefix ?? 'express_msm_';
  const names: string[] = [];
  const add = (Kind: any, config: Record<string, unknown>) => {
    const m = new Kind({ ...config, registers: [registry] });
    names.push(config.name as string);
    return m;
  };
  const defs: MetricDefinitions = { prom, prefix, add, stats: statsPerScrape(store) };
  storeMetrics(defs, store.stats());
  nodeMetrics(defs);
  timingMetrics(defs);
  return {
    names,
    unregister() {
      for (const n of names) registry.removeSingleMetric(n);
    },
  };
}

/** One scrape reads stats() once, however many metrics collect from it. */
function statsPerScrape(store: MemcachedStore): () => Stats {
  let cached: Stats | undefined;
  let cachedAt = -1;
  return () => {
    const now = Date.now();
    if (!cached || now !== cachedAt) {
      cached = store.stats();
      cachedAt = now;
    }
    return cached;
  };
}

/** Every numeric counter of store.stats() (named after the stats found at registration), and pending backups. */
function storeMetrics({ prom, prefix, add, stats }: MetricDefinitions, initial: Stats): void {
  for (const [key, value] of Object.entries(initial)) {
    if (typeof value !== 'number' || key === 'pendingBackups') continue;
    const name = `${prefix}${snake(key).replace(/_total$/, '')}_total`;
    add(prom.Counter, {
      name,
      help: `express-msm store counter ${key} (store.stats().${key})`,
      collect(this: any) {
        const v = stats()[key];
        this.reset();
        if (typeof v === 'number' && v > 0) this.inc(v);
      },
    });
  }

  add(prom.Gauge, {
    name: `${prefix}pending_backups`,
    help: 'Backup writes queued and not yet finished',
    collect(this: any) {
      this.set(stats().pendingBackups);
    },
  });
}

/** Per memcached node: availability, operations, errors and timeouts. */
function nodeMetrics({ prom, prefix, add, stats }: MetricDefinitions): void {
  add(prom.Gauge, {
    name: `${prefix}node_available`,
    help: 'Memcached node availability as the store sees it (1 up, 0 down)',
    labelNames: ['node', 'address', 'failover'],
    collect(this: any) {
      this.reset();
      for (const [node, n] of Object.entries(stats().nodes)) {
        this.set({ node, address: n.address, failover: String(n.failover) }, n.available ? 1 : 0);
      }
    },
  });

  add(prom.Counter, {
    name: `${prefix}node_operations_total`,
    help: 'Operations sent to each memcached node, by kind',
    labelNames: ['node', 'op'],
    collect(this: any) {
      this.reset();
      for (const [node, n] of Object.entries(stats().nodes)) {
        for (const op of ['get', 'set', 'add', 'delete', 'touch'] as const) this.inc({ node, op }, n.ops[op] ?? 0);
      }
    },
  });

  add(prom.Counter, {
    name: `${prefix}node_errors_total`,
    help: 'Failed operations per memcached node (kind: error or timeout)',
    labelNames: ['node', 'kind'],
    collect(this: any) {
      this.reset();
      for (const [node, n] of Object.entries(stats().nodes)) {
        this.inc({ node, kind: 'error' }, n.ops.errors ?? 0);
        this.inc({ node, kind: 'timeout' }, n.ops.timeouts ?? 0);
      }
    },
  });
}

/** Store operations: how many were timed, and their average and longest duration. */
function timingMetrics({ prom, prefix, add, stats }: MetricDefinitions): void {
  add(prom.Gauge, {
    name: `${prefix}operation_duration_ms`,
    help: 'Store operation durations in ms since start (stat: avg or max), from store.stats().timings',
    labelNames: ['operation', 'stat'],
    collect(this: any) {
      this.reset();
      for (const [operation, t] of Object.entries(stats().timings)) {
        this.set({ operation, stat: 'avg' }, t.avgMs);
        this.set({ operation, stat: 'max' }, t.maxMs);
      }
    },
  });

  add(prom.Counter, {
    name: `${prefix}operations_total`,
    help: 'Store operations timed since start, from store.stats().timings',
    labelNames: ['operation'],
    collect(this: any) {
      this.reset();
      for (const [operation, t] of Object.entries(stats().timings)) this.inc({ operation }, t.count);
    },
  });
}
