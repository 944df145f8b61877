// Auto-discovery's pure parts: the `config get cluster` data block and node ids derived from hostname:port.
import { DISCOVERED_ID, discoveredNodeId, parseClusterConfig } from '../../lib/memcached/discovery';
import { NODE_ID_PATTERN, resolveConfig } from '../../lib/express/config';

const A = 'mycluster.x1.0001.use1.cache.amazonaws.com|10.0.0.1|11211';
const B = 'mycluster.x1.0002.use1.cache.amazonaws.com|10.0.0.2|11211';
const C = 'mycluster.x1.0003.use1.cache.amazonaws.com|10.0.0.3|11211';

describe('parseClusterConfig', () => {
  test('version and nodes; connects to the IP, names the node by hostname:port', () => {
    const c = parseClusterConfig(`12\n${A} ${B}\n`);
    expect(c.version).toBe(12);
    expect(c.nodes.map((n) => n.host).sort()).toEqual(['10.0.0.1', '10.0.0.2']);
    const id = discoveredNodeId('mycluster.x1.0001.use1.cache.amazonaws.com', 11211);
    expect(c.nodes.find((n) => n.host === '10.0.0.1')!.id).toBe(id);
    expect(id).toMatch(NODE_ID_PATTERN);
    expect(id).toMatch(DISCOVERED_ID);
  });

  test('ids and order do not depend on the order the endpoint lists nodes in, nor on other nodes', () => {
    const one = parseClusterConfig(`1\n${A} ${B} ${C}\n`).nodes;
    const two = parseClusterConfig(`2\n${C} ${A} ${B}\n`).nodes;
    expect(two).toEqual(one);
    const without = parseClusterConfig(`3\n${C} ${A}\n`).nodes;
    expect(without).toEqual(one.filter((n) => n.host !== '10.0.0.2'));
  });

  test('a node that gets a new IP keeps its id', () => {
    const before = parseClusterConfig(`1\n${A}\n`).nodes[0];
    const after = parseClusterConfig(`2\n${A.replace('10.0.0.1', '10.0.9.9')}\n`).nodes[0];
    expect(after.id).toBe(before.id);
    expect(after.host).toBe('10.0.9.9');
  });

  test('no IP: connects to the hostname', () => {
    expect(parseClusterConfig('1\nnode1.test||11211\n').nodes[0]).toMatchObject({ host: 'node1.test', port: 11211 });
  });

  // Each with the reason it names: a bare toThrow() would also accept a TypeError from a parser bug.
  const lines = /expected a version line and a node line/;
  test.each([
    ['', 'no lines', lines],
    ['x\nnode|1.2.3.4|11211\n', 'version not a number', lines],
    ['1\n', 'no node line', lines],
    ['1\nnode|1.2.3.4\n', 'two fields', /node entry "node\|1\.2\.3\.4" is not hostname\|ip\|port/],
    ['1\nnode|1.2.3.4|0\n', 'port 0', /port "0" is not 1-65535/],
    ['1\nnode|1.2.3.4|70000\n', 'port out of range', /port "70000" is not 1-65535/],
    ['1\nno de|1.2.3.4|11211\n', 'space splits the entry', /node entry "no" is not hostname\|ip\|port/],
    ['1\nbad_host!|1.2.3.4|11211\n', 'hostname', /host "bad_host!" is not a hostname/],
    ['1\nnode|1.2.3.4;rm|11211\n', 'ip', /host "1\.2\.3\.4;rm" is not a hostname/],
    [`1\n${A} ${A}\n`, 'listed twice', /listed twice/],
    ['1\nnode|1.2.3.4|11211\nextra\n', 'three lines', lines],
  ])('rejects %j (%s)', (data, _why, reason) => {
    expect(() => parseClusterConfig(data)).toThrow(reason);
  });
});

describe('autoDiscovery option', () => {
  test('memcachedNodes or autoDiscovery, not both; no failoverNodes with it; endpoint and interval checked', () => {
    expect(() => resolveConfig({ memcachedNodes: 'n1:h:1', autoDiscovery: { endpoint: 'h:1' } })).toThrow(/not both/);
    expect(() => resolveConfig({ autoDiscovery: { endpoint: 'h:1' }, failoverNodes: 'n1' })).toThrow(/failoverNodes/);
    expect(() => resolveConfig({ autoDiscovery: { endpoint: 'h' } })).toThrow(/host:port/);
    expect(() => resolveConfig({ autoDiscovery: { endpoint: 'h:99999' } })).toThrow(/port/);
    expect(() => resolveConfig({ autoDiscovery: 'h:1' as never })).toThrow(/endpoint/);
    expect(() => resolveConfig({ autoDiscovery: { endpoint: 'h:1', intervalMs: 5 } })).toThrow(/intervalMs/);
    expect(() => resolveConfig({})).toThrow(/memcachedNodes/);
    const c = resolveConfig({ autoDiscovery: { endpoint: 'cfg.example.com:11211' } });
    expect(c.autoDiscovery).toEqual({ endpoint: { host: 'cfg.example.com', port: 11211 }, intervalMs: 60_000 });
    expect(c.nodes).toEqual([]);
    expect(c.encodeNodeId).toBe(true);
  });
});
