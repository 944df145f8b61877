// Issue 13: the index item format and accepted index values (pure functions).
import { decodeIndex, encodeIndex, indexValue } from '../../lib/modes/user-index';
import { JsonTranscoder } from '../../lib/transcoders/json';

describe('index item', () => {
  it('round-trips the value and its entries; any value, newlines and quotes included', () => {
    const value = 'ada "the first"\nprogrammer \u2603';
    const entries = new Map([
      ['A-n1', 1_800_000_000],
      ['B-n2', 1_800_000_060],
    ]);
    const bytes = encodeIndex(value, entries);
    expect([...bytes.subarray(0, 4)]).toEqual([0x4d, 0x53, 1, 0xfe]);
    expect(decodeIndex(bytes)).toEqual({ value, entries });
  });

  it('is null for anything that is not an index item, never a throw', () => {
    expect(decodeIndex(null)).toBeNull();
    expect(decodeIndex(Buffer.alloc(0))).toBeNull();
    expect(decodeIndex(new JsonTranscoder().encode({ cookie: { originalMaxAge: 1 } }))).toBeNull();
    const good = encodeIndex('u', new Map([['A', 1]]));
    expect(decodeIndex(good.subarray(0, good.length - 1))).toBeNull();
    const wrongShape = Buffer.concat([good.subarray(0, 4), Buffer.from('{"v":1,"e":{}}')]);
    expect(decodeIndex(wrongShape)).toBeNull();
    // Entries that are not numbers are skipped, not trusted.
    const odd = Buffer.concat([good.subarray(0, 4), Buffer.from('{"v":"u","e":{"A":"x","B":5}}')]);
    expect(decodeIndex(odd)).toEqual({ value: 'u', entries: new Map([['B', 5]]) });
  });

  it('accepts non-empty strings and finite numbers (as strings), nothing else', () => {
    expect(indexValue('alice')).toBe('alice');
    expect(indexValue(42)).toBe('42');
    for (const v of ['', undefined, null, NaN, Infinity, {}, ['a'], true, 10n]) expect(indexValue(v)).toBeUndefined();
  });
});
