// The memcached node list: msm's memcachedNodes and failoverNodes syntax, and host:port as autoDiscovery answers it.
import { ConfigError } from '../core/errors';

/** One memcached node of the list. */
export interface MemcachedNodeConfig {
  /** Node id, as in session ids (`n1`). */
  id: string;
  /** Host name or IP address. */
  host: string;
  /** TCP port. */
  port: number;
}

/** The nodes, in the order backups follow, and which of them are failover nodes. */
export interface NodeList {
  nodes: MemcachedNodeConfig[];
  /** false for a single `host:port` without id: ids then carry no node suffix (as msm). */
  encodeNodeId: boolean;
  failoverNodeIds: string[];
}

/** Node ids separate parts of a session id, so they may not contain `-` or `.`. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9_]{1,32}$/;
const HOST_PATTERN =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$/;

function parsePort(option: string, raw: string, entry: string): number {
  const port = /^\d{1,5}$/.test(raw) ? Number(raw) : NaN;
  if (!(port >= 1 && port <= 65535)) throw new ConfigError(option, entry, `port "${raw}" is not 1-65535`);
  return port;
}

function parseHost(option: string, raw: string, entry: string): string {
  if (!HOST_PATTERN.test(raw)) throw new ConfigError(option, entry, `host "${raw}" is not a hostname or address`);
  return raw.startsWith('[') ? raw.slice(1, -1) : raw;
}

/** Splits `host:port`, allowing a bracketed IPv6 host. */
function splitHostPort(s: string): [string, string] | null {
  const i = s.lastIndexOf(':');
  if (i <= 0) return null;
  return [s.slice(0, i), s.slice(i + 1)];
}

export function parseHostPort(
  option: string,
  host: string,
  port: string,
  entry: string,
): { host: string; port: number } {
  return { host: parseHost(option, host, entry), port: parsePort(option, port, entry) };
}

/** The entries of a node list: separated by commas or spaces; an empty one between commas is a mistake. */
function entriesOf(option: string, value: string): string[] {
  const entries: string[] = [];
  for (const part of value.trim().split(',')) {
    const trimmed = part.trim();
    if (trimmed === '') {
      throw new ConfigError(option, value, `empty entry (entry ${entries.length + 1}): a trailing or doubled comma?`);
    }
    entries.push(...trimmed.split(/\s+/));
  }
  return entries;
}

const addressOf = (n: MemcachedNodeConfig) => `${n.host.includes(':') ? `[${n.host}]` : n.host}:${n.port}`;

/** Parses msm's memcachedNodes: `id:host:port` entries separated by commas or spaces, or one `host:port`. */
export function parseMemcachedNodes(value: unknown): {
  /** The nodes, in the order given. */
  nodes: MemcachedNodeConfig[];
  /** Whether session ids carry the node id (false for a single `host:port`). */
  encodeNodeId: boolean;
} {
  const option = 'memcachedNodes';
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigError(option, value, 'expected "n1:host:port,n2:host:port" or "host:port"');
  }
  const entries = entriesOf(option, value);
  if (entries.length === 1 && (entries[0].split(':').length === 2 || entries[0].startsWith('['))) {
    // msm's single-node form: no id, and so no node id in session ids.
    const hp = splitHostPort(entries[0]);
    if (!hp) throw new ConfigError(option, entries[0], 'expected host:port');
    return {
      nodes: [{ id: 'n1', host: parseHost(option, hp[0], entries[0]), port: parsePort(option, hp[1], entries[0]) }],
      encodeNodeId: false,
    };
  }
  const nodes: MemcachedNodeConfig[] = [];
  for (const entry of entries) {
    const first = entry.indexOf(':');
    if (first <= 0) throw new ConfigError(option, entry, 'each entry must be id:host:port');
    const id = entry.slice(0, first);
    const hp = splitHostPort(entry.slice(first + 1));
    if (!hp) throw new ConfigError(option, entry, 'each entry must be id:host:port');
    if (!NODE_ID_PATTERN.test(id)) {
      throw new ConfigError(
        option,
        entry,
        `node id "${id}" must be 1-32 of [A-Za-z0-9_] (no "-" or ".": they separate id parts)`,
      );
    }
    if (nodes.some((n) => n.id === id)) throw new ConfigError(option, value, `duplicate node id "${id}"`);
    const node = { id, host: parseHost(option, hp[0], entry), port: parsePort(option, hp[1], entry) };
    const same = nodes.find((n) => n.port === node.port && n.host.toLowerCase() === node.host.toLowerCase());
    if (same) {
      // A session and its backup (or a failover node and its primary) would be one memcached: one failure loses both.
      throw new ConfigError(
        option,
        value,
        `"${same.id}" and "${id}" are the same memcached (${addressOf(node)}): list each host:port once`,
      );
    }
    nodes.push(node);
  }
  return { nodes, encodeNodeId: true };
}

function parseIdList(option: string, value: unknown, known: MemcachedNodeConfig[]): string[] {
  if (value === undefined || value === null || value === '') return [];
  if (typeof value !== 'string')
    throw new ConfigError(option, value, 'expected node ids separated by commas or spaces');
  const ids = value
    .trim()
    .split(/[\s,]+/)
    .filter(Boolean);
  for (const id of ids) {
    if (!known.some((n) => n.id === id)) {
      throw new ConfigError(
        option,
        value,
        `unknown node id "${id}" (memcachedNodes has ${known.map((n) => n.id).join(', ')})`,
      );
    }
  }
  return [...new Set(ids)];
}

/** memcachedNodes and failoverNodes together: at construction and for setMemcachedNodes. */
export function resolveNodes(memcachedNodes: unknown, failoverNodes: unknown): NodeList {
  const { nodes, encodeNodeId } = parseMemcachedNodes(memcachedNodes);
  const failoverNodeIds = parseIdList('failoverNodes', failoverNodes, nodes);
  if (failoverNodeIds.length && nodes.length === 1) {
    throw new ConfigError('failoverNodes', failoverNodes, 'needs more than one memcached node');
  }
  if (failoverNodeIds.length === nodes.length) {
    throw new ConfigError('failoverNodes', failoverNodes, 'names every node: at least one node must be a primary');
  }
  return { nodes, encodeNodeId, failoverNodeIds };
}
