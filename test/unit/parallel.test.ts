import { mapLimit } from '../../lib/core/parallel';

/** Resolves after `ms`, so that calls finish in another order than they started. */
const resolveAfter = <T>(ms: number, value: T) => new Promise<T>((resolve) => setTimeout(resolve, ms, value));

describe('mapLimit', () => {
  it('resolves with the results in the order of the items, whatever order the calls finish in', async () => {
    const delays = [30, 5, 20, 0, 10, 25, 1];
    const finished: number[] = [];
    const results = await mapLimit(delays, 3, async (ms, i) => {
      const r = await resolveAfter(ms, `r${i}`);
      finished.push(i);
      return r;
    });
    expect(results).toEqual(delays.map((_, i) => `r${i}`));
    expect(finished).not.toEqual(delays.map((_, i) => i));
  });

  it.each([1, 2, 4, 100])(
    'has at most %i calls in flight, and that many when there are enough items',
    async (limit) => {
      let inFlight = 0;
      let most = 0;
      const items = Array.from({ length: 12 }, (_, i) => i);
      await mapLimit(items, limit, async (i) => {
        inFlight++;
        most = Math.max(most, inFlight);
        await resolveAfter(i % 3, i);
        inFlight--;
      });
      expect(most).toBe(Math.min(limit, items.length));
      expect(inFlight).toBe(0);
    },
  );

  it('calls fn once per item, with its index, starting them in item order', async () => {
    const started: Array<[string, number]> = [];
    await mapLimit(['a', 'b', 'c', 'd', 'e'], 2, async (item, i) => {
      started.push([item, i]);
      await resolveAfter(item === 'a' ? 15 : 1, item);
    });
    expect(started).toEqual([
      ['a', 0],
      ['b', 1],
      ['c', 2],
      ['d', 3],
      ['e', 4],
    ]);
  });

  it('accepts a synchronous fn', async () => {
    expect(await mapLimit([1, 2, 3], 2, (n) => n * 2)).toEqual([2, 4, 6]);
  });

  it('resolves at once with [] for no items', async () => {
    let calls = 0;
    expect(await mapLimit([], 4, () => calls++)).toEqual([]);
    expect(calls).toBe(0);
  });

  it('rejects with the first failure and starts no item after it', async () => {
    const started: number[] = [];
    const failure = new Error('item 2 failed');
    // 0 and 1 start; when they finish, 2 (fails at once) and 3 (succeeds later) start; 3's slot then takes nothing.
    const run = mapLimit([0, 1, 2, 3, 4, 5, 6, 7], 2, async (i) => {
      started.push(i);
      await resolveAfter(i === 2 ? 1 : i === 3 ? 20 : 10, i);
      if (i === 2) throw failure;
      return i;
    });
    await expect(run).rejects.toBe(failure);
    await resolveAfter(50, 0);
    expect(started).toEqual([0, 1, 2, 3]);
  });

  it('refuses a limit below 1', async () => {
    await expect(mapLimit([1], 0, (n) => n)).rejects.toThrow(RangeError);
    await expect(mapLimit([1], Number.NaN, (n) => n)).rejects.toThrow(/limit/);
  });
});
