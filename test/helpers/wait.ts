// Tests wait on state, not on time: a fixed sleep is either too short on a loaded CI box or wasted everywhere else.
// sleep() is for time that is the scenario itself (an expiry, a pause between requests, a window in which something
// must not happen).

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface WaitOptions {
  /** Give up after this many ms (default 5000). */
  timeout?: number;
  /** Poll every this many ms (default 25). */
  interval?: number;
  /** What is awaited, for the timeout's message. */
  what?: string;
}

type Falsy = undefined | null | false | 0 | '';

/**
 * Polls `condition` until it returns a truthy value, and returns that value; throws once `timeout` ms have passed
 * without one. An exception from `condition` ends the wait at once.
 */
export async function waitFor<T>(
  condition: () => T | Falsy | Promise<T | Falsy>,
  { timeout = 5000, interval = 25, what = 'condition' }: WaitOptions = {},
): Promise<T> {
  const end = Date.now() + timeout;
  for (;;) {
    const v = await condition();
    if (v) return v as T;
    if (Date.now() > end) throw new Error(`timed out after ${timeout} ms waiting for ${what}`);
    await sleep(interval);
  }
}
