/** What `f` throws, to assert on its class, message and cause; fails the test when it throws nothing. */
export function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (e) {
    return e as Error;
  }
  throw new Error('did not throw');
}
