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

// express-session's default ids (uid-safe, base64url) use [A-Za-z0-9_-]; ours add one `.route` part.
const ID_SHAPE = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_]+)?$/;

export class SessionIdFormat {
  constructor(
    private readonly nodeIds: ReadonlySet<string>,
    private readonly encodeNodeId: boolean,
    /** Longest id whose longest derived key still fits memcached's 250 bytes. */
    readonly maxLength: number,
  ) {}

  create(nodeId: string | undefined, route: string | undefined): string {
    return this.format(randomPart(), this.encodeNodeId ? nodeId : undefined, route);
  }

  format(random: string, nodeId: string | undefined, route: string | undefined): string {
    return random + (nodeId ? '-' + nodeId : '') + (route ? '.' + route : '');
  }

  /** Returns null for anything that must not reach memcached: wrong alphabet, too long, empty parts. */
  parse(id: unknown): SessionId | null {
    if (typeof id !== 'string' || id.length === 0 || id.length > this.maxLength || !ID_SHAPE.test(id)) return null;
    const dot = id.indexOf('.');
    const base = dot < 0 ? id : id.slice(0, dot);
    const route = dot < 0 ? undefined : id.slice(dot + 1);
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
