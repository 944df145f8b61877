import { JsonTranscoder } from '../../lib/transcoders/json';

describe('JsonTranscoder', () => {
  const t = new JsonTranscoder();
  it('round-trips with a header naming format and kind', () => {
    const s = {
      cookie: { originalMaxAge: 1000, path: '/' },
      user: { id: 2 ** 53 - 1, name: 'ü' },
      cart: [1, 'a', null, { x: true }],
    };
    const b = t.encode(s);
    expect([...b.subarray(0, 4)]).toEqual([0x4d, 0x53, 1, 1]);
    expect(t.decode(b)).toEqual(s);
  });
  it.each([
    ['empty', Buffer.alloc(0)],
    ['no header', Buffer.from('{"cookie":{}}')],
    ['other kind', Buffer.from([0x4d, 0x53, 1, 2, 0x7b, 0x7d])],
    ['other version', Buffer.from([0x4d, 0x53, 9, 1, 0x7b, 0x7d])],
    ['truncated JSON', Buffer.concat([Buffer.from([0x4d, 0x53, 1, 1]), Buffer.from('{"cookie":{"a"')])],
    [
      'a cookie that is not an object',
      Buffer.concat([Buffer.from([0x4d, 0x53, 1, 1]), Buffer.from('{"cookie":1,"a":1}')]),
    ],
    ['array', Buffer.concat([Buffer.from([0x4d, 0x53, 1, 1]), Buffer.from('[1]')])],
  ])('decodes %s to null, never throws', (_n, b) => {
    expect(t.decode(b)).toBeNull();
  });
  it('round-trips a session stored without a cookie (store.set, like MemoryStore)', () => {
    expect(t.decode(t.encode({ a: 1 }))).toEqual({ a: 1 });
  });
});
