// Where a session's copies go: the one placement rule, pure (list, zones, availability in; node ids out). msm puts
// the backup on the next available node; with zones, the copies go to the next nodes in list order whose zone holds
// no copy yet, and only when zones run out to any other node. With no zones and one backup this is msm's rule.
import { ConfigError } from '../core/errors';
import type { MemcachedNodeConfig } from './node-list';

/** The `zones` option: node id -> zone name, or a function of the node (for discovered nodes). */
export type Zones = Record<string, string> | ((node: { id: string; host: string; port: number }) => string);
/** Resolved: a node's zone; a node not named is a zone of its own. */
export type ZoneOf = (node: MemcachedNodeConfig) => string;

/** What placement needs to know about the nodes. */
export interface PlacementView {
  /** Which nodes hold a copy, in list order (a removed node's former list, or the current one). */
  list: readonly string[];
  isUp(id: string): boolean;
  isFailover(id: string): boolean;
  zoneOf(id: string): string;
}

/**
 * Up to `count` nodes for the backups of sessions whose primary is `primary`, in the order they are preferred.
 * Walks the list after the primary (wrapping), skipping nodes that are down and nodes taken already: first
 * non-failover nodes in zones holding no copy yet (the primary's zone holds one), then any non-failover node, then
 * failover nodes the same two ways (msm: failover nodes only when no other primary is up). `taken`: nodes already
 * chosen (their zones hold a copy too).
 */
export function placeBackups(
  view: PlacementView,
  primary: string,
  count: number,
  taken: readonly string[] = [],
): string[] {
  const out: string[] = [];
  if (count <= 0) return out;
  const { list } = view;
  const start = list.indexOf(primary);
  const zones = new Set([view.zoneOf(primary), ...taken.map((id) => view.zoneOf(id))]);
  for (const failover of [false, true]) {
    for (const distinct of [true, false]) {
      for (let i = 1; i <= list.length && out.length < count; i++) {
        const cand = list[(start + i + list.length) % list.length];
        if (cand === primary || taken.includes(cand) || out.includes(cand)) continue;
        if (view.isFailover(cand) !== failover || !view.isUp(cand)) continue;
        const zone = view.zoneOf(cand);
        if (distinct && zones.has(zone)) continue;
        out.push(cand);
        zones.add(zone);
      }
    }
  }
  return out;
}

/**
 * The `zones` option checked against the nodes it names (`nodes`: the configured list; empty with autoDiscovery,
 * then the map cannot be checked up front): a map naming no configured node is a mistake, not a default.
 */
export function zoneResolver(v: unknown, nodes: readonly MemcachedNodeConfig[]): ZoneOf | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v === 'function') {
    const f = v as (node: { id: string; host: string; port: number }) => unknown;
    return (node) => {
      const z = f({ id: node.id, host: node.host, port: node.port });
      // A function that answers nothing usable for a node leaves it a zone of its own, as an unnamed node.
      return typeof z === 'string' && z !== '' ? `zone:${z}` : `node:${node.id}`;
    };
  }
  if (typeof v !== 'object' || Array.isArray(v))
    throw new ConfigError('zones', v, 'expected { [nodeId]: zone } or a function ({ id, host, port }) => zone');
  const map = v as Record<string, unknown>;
  const bad = Object.entries(map).filter(([, z]) => typeof z !== 'string' || z === '');
  if (bad.length)
    throw new ConfigError('zones', v, `zone names must be non-empty strings (${bad.map(([id]) => id).join(', ')})`);
  if (nodes.length) {
    const unknown = Object.keys(map).filter((id) => !nodes.some((n) => n.id === id));
    if (unknown.length)
      throw new ConfigError(
        'zones',
        v,
        `names nodes that memcachedNodes does not list: ${unknown.join(', ')} (nodes: ${nodes.map((n) => n.id).join(', ')})`,
      );
  }
  const zones = new Map(Object.entries(map as Record<string, string>));
  return (node) => {
    const z = zones.get(node.id);
    return z === undefined ? `node:${node.id}` : `zone:${z}`;
  };
}
