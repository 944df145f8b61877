// A bounded parallel map: many memcached reads or copies at once, but not thousands (the connection and the node
// are shared with the requests being served).

/**
 * Calls `fn` on every item, at most `limit` calls in flight, starting them in the order of `items`; resolves with
 * the results in that order. The first failure rejects it, and items not started by then are not started (those in
 * flight run on; their results are dropped).
 */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T, index: number) => Promise<R> | R,
): Promise<R[]> {
  if (!(limit >= 1)) throw new RangeError(`mapLimit: limit must be 1 or more, not ${limit}`);
  const results = new Array<R>(items.length);
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      const i = next++;
      try {
        results[i] = await fn(items[i], i);
      } catch (e) {
        failed = true;
        throw e;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
