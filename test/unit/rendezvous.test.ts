import { randomPart } from '../../lib/memcached/session-id';
import { rendezvous } from '../../lib/memcached/nodes';

describe('rendezvous placement of ids that name no node', () => {
  const keys = Array.from({ length: 3000 }, () => randomPart());

  test('a joining node takes keys only for itself, about its share', () => {
    const moved = keys.filter((k) => rendezvous(k, ['n1', 'n2']) !== rendezvous(k, ['n1', 'n2', 'n3']));
    for (const k of moved) expect(rendezvous(k, ['n1', 'n2', 'n3'])).toBe('n3');
    expect(moved.length / keys.length).toBeGreaterThan(0.28);
    expect(moved.length / keys.length).toBeLessThan(0.39);
  });

  test('a leaving node gives up only its own keys; the order of the list does not matter', () => {
    for (const k of keys) {
      const before = rendezvous(k, ['n1', 'n2', 'n3']);
      if (before !== 'n1') expect(rendezvous(k, ['n2', 'n3'])).toBe(before);
      expect(rendezvous(k, ['n3', 'n1', 'n2'])).toBe(before);
    }
  });
});
