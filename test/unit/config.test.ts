import { ConfigError, parseMemcachedNodes, parseStorageKeyPrefix, resolveConfig } from '../../lib/express/config';

describe('memcachedNodes (msm syntax)', () => {
  it('parses id:host:port lists separated by commas or spaces', () => {
    expect(parseMemcachedNodes('n1:127.0.0.1:11211,n2:mc.local:11212  n3:[::1]:11213')).toEqual({
      nodes: [
        { id: 'n1', host: '127.0.0.1', port: 11211 },
        { id: 'n2', host: 'mc.local', port: 11212 },
        { id: 'n3', host: '::1', port: 11213 },
      ],
      encodeNodeId: true,
    });
  });

  it('accepts a single host:port without id, and then puts no node id in session ids (as msm)', () => {
    expect(parseMemcachedNodes('localhost:11211')).toEqual({
      nodes: [{ id: 'n1', host: 'localhost', port: 11211 }],
      encodeNodeId: false,
    });
  });

  it.each([
    ['', /memcachedNodes/],
    ['n1:127.0.0.1', /id:host:port|port/],
    ['n1:127.0.0.1:0', /port "0"/],
    ['n1:127.0.0.1:99999', /port/],
    ['n-1:127.0.0.1:11211,n2:h:1', /node id "n-1"/],
    ['n.1:127.0.0.1:11211,n2:h:1', /node id "n.1"/],
    ['n1:127.0.0.1:11211,n1:127.0.0.1:11212', /duplicate node id "n1"/],
    ['n1:bad host:11211', /memcachedNodes/],
    ['n1:h_x:11211', /host "h_x"/],
  ])('rejects %j with a message naming the problem', (value, msg) => {
    expect(() => parseMemcachedNodes(value)).toThrow(ConfigError);
    expect(() => parseMemcachedNodes(value)).toThrow(msg);
  });
});

describe('resolveConfig', () => {
  const nodes = 'n1:127.0.0.1:11211,n2:127.0.0.1:11212';

  it('applies msm defaults', () => {
    const c = resolveConfig({ memcachedNodes: nodes });
    expect(c).toMatchObject({
      sticky: false,
      operationTimeout: 1000,
      sessionBackupAsync: true,
      sessionBackupTimeout: 100,
      storageKeyPrefix: '',
      defaultMaxInactiveInterval: 1800,
      failoverNodeIds: [],
      nodeAvailabilityCacheTTL: 1000,
    });
  });

  it.each([
    [{ failoverNodes: 'n3' }, /failoverNodes.*unknown node id "n3"/],
    [{ failoverNodes: 'n1 n2' }, /failoverNodes.*names every node/],
    [{ operationTimeout: -1 }, /operationTimeout -1/],
    [{ operationTimeout: 0 }, /operationTimeout 0/],
    [{ sessionBackupTimeout: -5 }, /sessionBackupTimeout -5/],
    [{ defaultMaxInactiveInterval: 1.5 }, /defaultMaxInactiveInterval/],
    [{ sticky: 'yes' }, /sticky "yes"/],
    [{ sticky: true }, /route.*required when sticky/],
    [{ sticky: true, route: 'a.b' }, /route "a.b"/],
    [{ sessionAttributeFilter: '(' }, /sessionAttributeFilter/],
    [{ storageKeyPrefix: 'context' }, /Tomcat concept/],
    [{ storageKeyPrefix: 'static:has space' }, /storageKeyPrefix/],
    [{ username: 'u' }, /username and password go together/],
  ])('rejects %j', (extra, msg) => {
    expect(() => resolveConfig({ memcachedNodes: nodes, ...(extra as object) })).toThrow(msg);
  });

  it('rejects failoverNodes with a single node', () => {
    expect(() => resolveConfig({ memcachedNodes: 'n1:h:1', failoverNodes: 'n1' })).toThrow(/more than one/);
  });
});

describe('storageKeyPrefix (msm StorageKeyFormat)', () => {
  it('joins tokens with ":" and ends with "_"', () => {
    expect(parseStorageKeyPrefix('static:shop', () => 'h')).toBe('shop_');
    expect(parseStorageKeyPrefix('static:shop,host', () => 'web1')).toBe('shop:web1_');
    expect(parseStorageKeyPrefix('host.hash', () => 'web1')).toMatch(/^[0-9a-f]{8}_$/);
    expect(parseStorageKeyPrefix(undefined, () => 'h')).toBe('');
  });

  it('allows "-" and "." in a prefix: routing reads the parsed id, not the key (msm #350)', () => {
    expect(parseStorageKeyPrefix('static:my-app.v2', () => 'h')).toBe('my-app.v2_');
  });
});
