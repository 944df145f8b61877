// What both modes do with a session's copies in memcached: follow forwarding markers, decode or discard what was
// read, and find where a session whose node is down moves to.
import { StorageUnavailableError } from '../core/errors';
import { hashId } from '../core/logger';
import type { NodeSet } from '../memcached/nodes';
import type { SessionId } from '../memcached/session-id';
import type { StoredSession } from '../transcoders/transcoder';
import { isMsmItem, movedTo } from '../transcoders/transcoder';
import type { ModeContext } from './mode';

/** Markers followed at most per load: a relocation and a takeover of one session, and one more. */
const MAX_HOPS = 3;

/**
 * The copy for `sid`, following forwarding markers (relocation, takeover) from one id to the next: `read` gives the
 * copy under exactly one id (possibly a marker), `bytesOf` its bytes. Null when a marker names an invalid id or the
 * chain is longer than MAX_HOPS.
 */
export async function followMarkers<T>(
  ctx: ModeContext,
  sid: SessionId,
  read: (sid: SessionId) => Promise<T | null>,
  bytesOf: (copy: T) => Buffer,
): Promise<{ copy: T; at: SessionId } | null> {
  let at = sid;
  for (let hops = 0; hops <= MAX_HOPS; hops++) {
    const copy = await read(at);
    if (!copy) return null;
    const to = movedTo(bytesOf(copy));
    if (to === undefined) return { copy, at };
    const next = ctx.idFormat.parse(to);
    if (!next) return null;
    at = next;
  }
  return null;
}

/**
 * A session item read from `node`, decoded. Null (counted and logged): another application's item, left in place
 * (foreignItem); or bytes the transcoder refuses, deleted by `discard`.
 */
export function decodeOrDiscard(
  ctx: ModeContext,
  sid: SessionId,
  node: string,
  bytes: Buffer,
  discard: () => void,
): StoredSession | null {
  const { stats, logger, transcoder } = ctx;
  const session = transcoder.decode(bytes, sid);
  if (session) return session;
  if (!isMsmItem(bytes)) return foreignItem(ctx, sid, node);
  stats.requestsWithoutSession++;
  stats.decodeFailures++;
  logger.warn(
    `session ${hashId(sid.id)} on ${node}: ${bytes.length} bytes do not decode with ${transcoder.name}; deleted`,
  );
  discard();
  return null;
}

/** Another application's item under a session key (e.g. Tomcat msm on shared nodes): not ours to delete. */
export function foreignItem(ctx: ModeContext, sid: SessionId, node: string): null {
  ctx.stats.requestsWithoutSession++;
  ctx.stats.foreignItems++;
  ctx.logger.warn(
    `session ${hashId(sid.id)} on ${node}: the item is not express-msm's (no header); left in place, treated as no session`,
  );
  return null;
}

/**
 * msm's relocation rule: a session whose node is down moves to the node that holds its first backup (msm: the next
 * available node; with zones, the next in another zone), under its id with that node (same random part and route,
 * so every instance computes the same id). Null when no other node is available.
 */
export function relocationOf(
  ctx: Pick<ModeContext, 'nodes' | 'idFormat'>,
  sid: SessionId,
  from: string,
): { node: string; id: string } | null {
  const node = ctx.nodes.backupNodesOf(from, 1)[0];
  return node ? { node, id: ctx.idFormat.withNode(sid, node) } : null;
}

/** A session moved off a node that is down: counted and logged as msm does. */
export function noteRelocated(ctx: ModeContext, sid: SessionId, from: string, to: string): void {
  ctx.stats.requestsWithMemcachedFailover++;
  ctx.stats.sessionsRelocated++;
  ctx.logger.warn(`session ${hashId(sid.id)}: node ${from} down, relocated to ${to}`);
}

/**
 * A load that read nothing because no node answers: an outage, not "no session", which would have express-session
 * start a fresh session (a silent logout). 503; `cause`: why `node` (the session's) last failed, else any node's.
 */
export function outage(nodes: NodeSet, sid: SessionId, node: string): StorageUnavailableError {
  const from = [node, ...nodes.ids].find((id) => nodes.lastError(id));
  const cause = from === undefined ? undefined : nodes.lastError(from);
  return new StorageUnavailableError(
    `express-msm: cannot load session ${hashId(sid.id)}: no memcached node is available${cause ? ` (${from}: ${cause.message})` : ''}`,
    { cause },
  );
}
