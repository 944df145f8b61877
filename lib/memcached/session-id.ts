// Session ids in msm's format: `<random>-<nodeId>[.<route>]`. Create, parse, change node, change route, validate.
// Knows nothing of keys or node health.
import { randomBytes } from 'crypto';

/** 128 bits from crypto, as 32 upper-case hex characters (Tomcat's own id shape). Never contains `-` or `.`. */
export function randomPart(): string {
  return randomBytes(16).toString('hex').toUpperCase();
}

export interface SessionId {
  /** The whole id as the client sent it. */
  readonly id: string;
  /** The id without node and route: stays the same across relocation and takeover. */
  readonly random: string;
  /** Node id from the suffix, when the text after the last `-` is a configured node id. */
  readonly nodeId: string | undefined;
  readonly route: string | undefined;
}

/** A route (jvmRoute) after the last `.`. */
const ROUTE = /^[A-Za-z0-9_]+$/;
/** Longer than any cookie a browser sends (4 KB): longer ids are refused before any work is done on them. */
export const MAX_ID_LENGTH = 4096;
/** In `u` mode a surrogate pair is one code point: only unpaired halves match. */
const LONE_SURROGATE = /\p{Cs}/u;

export class SessionIdFormat {
  constructor(
    private readonly nodeIds: ReadonlySet<string>,
    private readonly encodeNodeId: boolean,
  ) {}

  create(nodeId: string | undefined, route: string | undefined): string {
    return this.format(randomPart(), this.encodeNodeId ? nodeId : undefined, route);
  }

  format(random: string, nodeId: string | undefined, route: string | undefined): string {
    return random + (nodeId ? '-' + nodeId : '') + (route ? '.' + route : '');
  }

  /**
   * Any id express-session can produce (a custom genid's `%`, `/`, spaces, non-ASCII, 300 characters): keys are
   * built from it by KeyFormat.idToKeyPart, which escapes or hashes what is not msm-format. Returns null for what
   * has no key: not a string, empty, longer than MAX_ID_LENGTH, or not well-formed UTF-16 (a lone surrogate has no
   * UTF-8 form, so two such ids would share a key).
   */
  parse(id: unknown): SessionId | null {
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_ID_LENGTH || LONE_SURROGATE.test(id)) return null;
    const dot = id.lastIndexOf('.');
    const hasRoute = dot > 0 && ROUTE.test(id.slice(dot + 1));
    const base = hasRoute ? id.slice(0, dot) : id;
    const route = hasRoute ? id.slice(dot + 1) : undefined;
    let random = base;
    let nodeId: string | undefined;
    if (this.encodeNodeId) {
      const dash = base.lastIndexOf('-');
      if (dash > 0 && this.nodeIds.has(base.slice(dash + 1))) {
        nodeId = base.slice(dash + 1);
        random = base.slice(0, dash);
      }
    }
    return { id, random, nodeId, route };
  }

  /** Same random part and route, another node (msm's createNewSessionId): deterministic, so two instances agree. */
  withNode(sid: SessionId, nodeId: string): string {
    return this.format(sid.random, this.encodeNodeId ? nodeId : undefined, sid.route);
  }

  /** Same random part and node, another route (msm's changeSessionIdForTomcatFailover). */
  withRoute(sid: SessionId, route: string | undefined): string {
    return this.format(sid.random, sid.nodeId, route);
  }
}
