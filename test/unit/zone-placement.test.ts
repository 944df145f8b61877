// The placement rule (lib/memcached/placement.ts): pure, and with defaults exactly msm's "next available node".
import { ConfigError } from '../../lib/core/errors';
import { KeyFormat } from '../../lib/memcached/keys';
import { NodeSet } from '../../lib/memcached/nodes';
import { type PlacementView, placeBackups, zoneResolver } from '../../lib/memcached/placement';
import { resolveConfig } from '../../lib/express/config';

const SIX = ['n1', 'n2', 'n3', 'n4', 'n5', 'n6'];
const ZONES: Record<string, string> = { n1: 'a', n2: 'a', n3: 'b', n4: 'b', n5: 'c', n6: 'c' };

function view(opts: { list?: string[]; down?: string[]; failover?: string[]; zones?: Record<string, string> }) {
  const v: PlacementView = {
    list: opts.list ?? SIX,
    isUp: (id) => !(opts.down ?? []).includes(id),
    isFailover: (id) => (opts.failover ?? []).includes(id),
    zoneOf: (id) => (opts.zones?.[id] ? `zone:${opts.zones[id]}` : `node:${id}`),
  };
  return v;
}

describe('placeBackups', () => {
  it('puts each copy in a zone that holds none yet, in list order after the primary', () => {
    const v = view({ zones: ZONES });
    expect(placeBackups(v, 'n1', 1)).toEqual(['n3']);
    expect(placeBackups(v, 'n2', 1)).toEqual(['n3']);
    expect(placeBackups(v, 'n5', 1)).toEqual(['n1']);
    expect(placeBackups(v, 'n6', 1)).toEqual(['n1']);
    expect(placeBackups(v, 'n1', 2)).toEqual(['n3', 'n5']);
    expect(placeBackups(v, 'n4', 2)).toEqual(['n5', 'n1']);
  });

  it('skips nodes that are down, and takes any other node only when the zones run out', () => {
    expect(placeBackups(view({ zones: ZONES, down: ['n3', 'n4'] }), 'n1', 1)).toEqual(['n5']);
    // zone b down: copies of a session on n1 go to c, then (zones run out) to n2, a's other node
    expect(placeBackups(view({ zones: ZONES, down: ['n3', 'n4'] }), 'n1', 2)).toEqual(['n5', 'n2']);
    expect(placeBackups(view({ zones: ZONES, down: ['n3', 'n4', 'n5', 'n6'] }), 'n1', 1)).toEqual(['n2']);
    expect(placeBackups(view({ zones: ZONES, down: ['n2', 'n3', 'n4', 'n5', 'n6'] }), 'n1', 1)).toEqual([]);
    // the primary's own zone holds a copy even when the primary is down (where a relocation looks)
    expect(placeBackups(view({ zones: ZONES, down: ['n3'] }), 'n3', 2)).toEqual(['n5', 'n1']);
  });

  it('a node not named is a zone of its own; failover nodes only when no other node can take the copy', () => {
    expect(placeBackups(view({ zones: { n1: 'a', n2: 'a' } }), 'n1', 2)).toEqual(['n3', 'n4']);
    const fo = view({ list: ['n1', 'n2', 'n3'], failover: ['n2'] });
    expect(placeBackups(fo, 'n1', 1)).toEqual(['n3']);
    expect(placeBackups(fo, 'n1', 2)).toEqual(['n3', 'n2']);
    expect(placeBackups(view({ list: ['n1', 'n2', 'n3'], failover: ['n2'], down: ['n3'] }), 'n1', 1)).toEqual(['n2']);
  });

  it('backupCount 0 places nothing; never the primary, never a node twice', () => {
    expect(placeBackups(view({}), 'n1', 0)).toEqual([]);
    const all = placeBackups(view({ zones: ZONES }), 'n2', 9);
    expect(all).toEqual(['n3', 'n5', 'n4', 'n6', 'n1']);
  });
});

describe('NodeSet.backupNodesOf with defaults', () => {
  let set: NodeSet;
  afterEach(() => set?.close());

  it('equals nextAvailable (msm) for every primary and every pattern of nodes down, failover nodes included', async () => {
    // Closed ports: every probe fails; availability is then set by hand, and a 1 h TTL keeps probes away.
    set = new NodeSet({
      nodes: SIX.map((id, i) => ({ id, host: '127.0.0.1', port: 1 + i })),
      failoverNodeIds: ['n4'],
      operationTimeout: 200,
      nodeAvailabilityCacheTTL: 3_600_000,
      keys: new KeyFormat(''),
      logger: { debug() {}, info() {}, warn() {}, error() {} },
    });
    await set.refresh();
    let compared = 0;
    for (let mask = 0; mask < 1 << SIX.length; mask++) {
      SIX.forEach((id, i) => (mask & (1 << i) ? set.markFailed(id) : set.markOk(id)));
      for (const p of SIX) {
        const next = set.nextAvailable(p);
        expect(set.backupNodesOf(p, 1)).toEqual(next === undefined ? [] : [next]);
        compared++;
      }
    }
    expect(compared).toBe(64 * 6);
  });
});

describe('the zones and backupCount options', () => {
  const nodes = 'n1:127.0.0.1:11211,n2:127.0.0.1:11212,n3:127.0.0.1:11213';

  it('a map naming nodes that are not listed is a ConfigError naming them', () => {
    const e = (() => {
      try {
        resolveConfig({ memcachedNodes: nodes, zones: { n1: 'a', n9: 'b', x: 'c' } });
      } catch (err) {
        return err as Error;
      }
    })();
    expect(e).toBeInstanceOf(ConfigError);
    expect(e!.message).toMatch(/zones.*n9, x/);
  });

  it('refuses zone names that are not strings, and anything but a map or a function', () => {
    expect(() => resolveConfig({ memcachedNodes: nodes, zones: { n1: 3 } as never })).toThrow(ConfigError);
    expect(() => resolveConfig({ memcachedNodes: nodes, zones: 'a,b' as never })).toThrow(/zones/);
  });

  it('backupCount: an integer >= 0, fewer than the nodes, 1 when sticky', () => {
    expect(resolveConfig({ memcachedNodes: nodes }).backupCount).toBe(1);
    expect(resolveConfig({ memcachedNodes: nodes, backupCount: 2 }).backupCount).toBe(2);
    expect(resolveConfig({ memcachedNodes: nodes, backupCount: 0 }).backupCount).toBe(0);
    expect(() => resolveConfig({ memcachedNodes: nodes, backupCount: 1.5 })).toThrow(/backupCount.*integer/);
    expect(() => resolveConfig({ memcachedNodes: nodes, backupCount: -1 })).toThrow(ConfigError);
    expect(() => resolveConfig({ memcachedNodes: nodes, backupCount: 3 })).toThrow(/at least 4 nodes/);
    expect(() => resolveConfig({ memcachedNodes: nodes, sticky: true, route: 'r1', backupCount: 0 })).toThrow(/sticky/);
  });

  it('a zones function names discovered nodes; one answering nothing leaves the node a zone of its own', () => {
    const zoneOf = zoneResolver((n: { host: string; port: number }) => (n.port < 11213 ? 'low' : ''), [])!;
    expect(zoneOf({ id: 'n1', host: 'h', port: 11211 })).toBe(zoneOf({ id: 'n2', host: 'h', port: 11212 }));
    expect(zoneOf({ id: 'n3', host: 'h', port: 11213 })).toBe('node:n3');
  });
});
