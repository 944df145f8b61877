// Floors: the memcached traffic a mode cannot do without, sent by the least code that can send it (binary frames on
// a plain socket, no timeouts, failover, validity decoding or error handling). Not stores anyone should use: they
// bound from below what any implementation of msm's modes costs, to tell a target out of reach from one missed
// (`--only memory,floor-sticky,connect-redis,floor-non-sticky`; docs/benchmark.md).
import * as net from 'net';
import session from 'express-session';

const OP = { get: 0x00, set: 0x01, setq: 0x11 } as const;
const TTL = 1800;

/** One memcached node: requests of a turn leave in one write (corked), quiet sets are never answered. */
class RawNode {
  private readonly sock: net.Socket;
  private readonly waiting: { opaque: number; done: (value: Buffer | null) => void }[] = [];
  private partial: Buffer | undefined;
  private seq = 0;

  constructor(address: string) {
    const [host, port] = address.split(':');
    this.sock = net.connect(Number(port), host);
    this.sock.setNoDelay(true);
    this.sock.on('data', (d: Buffer) => this.onData(d));
  }

  get(key: string): Promise<Buffer | null> {
    return new Promise((done) => this.waiting.push({ opaque: this.frame(OP.get, key, undefined), done }));
  }

  set(key: string, value: Buffer): Promise<void> {
    return new Promise((done) => this.waiting.push({ opaque: this.frame(OP.set, key, value), done: () => done() }));
  }

  setq(key: string, value: Buffer): void {
    this.frame(OP.setq, key, value);
  }

  close(): void {
    this.sock.destroy();
  }

  private frame(opcode: number, key: string, value: Buffer | undefined): number {
    const keyLength = Buffer.byteLength(key);
    const extras = value ? 8 : 0;
    const head = Buffer.alloc(24 + extras + keyLength);
    head[0] = 0x80;
    head[1] = opcode;
    head.writeUInt16BE(keyLength, 2);
    head[4] = extras;
    head.writeUInt32BE(extras + keyLength + (value?.length ?? 0), 8);
    const opaque = (this.seq = (this.seq + 1) >>> 0);
    head.writeUInt32BE(opaque, 12);
    if (value) head.writeUInt32BE(TTL, 28);
    head.write(key, 24 + extras);
    if (!this.sock.writableCorked) {
      this.sock.cork();
      setImmediate(() => this.sock.uncork());
    }
    this.sock.write(head);
    if (value) this.sock.write(value);
    return opaque;
  }

  private onData(data: Buffer): void {
    const buf = this.partial ? Buffer.concat([this.partial, data]) : data;
    this.partial = undefined;
    let at = 0;
    while (buf.length - at >= 24 && buf.length - at >= 24 + buf.readUInt32BE(at + 8)) {
      const end = at + 24 + buf.readUInt32BE(at + 8);
      const opaque = buf.readUInt32BE(at + 12);
      // A quiet set's failure answers with its own opaque: nothing waits for it.
      if (this.waiting.length && this.waiting[0].opaque === opaque) {
        const found = buf.readUInt16BE(at + 6) === 0 && buf[at + 1] === OP.get;
        this.waiting.shift()!.done(found ? buf.subarray(at + 24 + buf[at + 4] + buf.readUInt16BE(at + 2), end) : null);
      }
      at = end;
    }
    if (at < buf.length) this.partial = buf.subarray(at);
  }
}

const VALIDITY = Buffer.alloc(20);

/**
 * Sticky's floor: MemoryStore, plus the backup every change must send to memcached (its bytes, as one quiet set that
 * is never answered). Reads send nothing, as sticky's do.
 */
export function stickyFloor(addresses: string[]): { store: session.Store; close(): void } {
  const node = new RawNode(addresses[0]);
  class StickyFloor extends session.MemoryStore {
    set(sid: string, sess: session.SessionData, cb?: (err?: unknown) => void): void {
      super.set(sid, sess, cb);
      node.setq(sid, Buffer.from((this as any).sessions[sid]));
    }
  }
  return { store: new StickyFloor(), close: () => node.close() };
}

/**
 * Non-sticky's floor: msm's operations with live backup and read-repair kept. A load gets the session and its validity
 * from the primary and the backup's validity from the next node, in one round trip; a change sets the session and
 * validity on the primary (answered: the request must know it landed) and bak: + bak:validity: on the next node
 * (quiet); an unchanged session's touch rewrites both validity records (quiet). Decoding a validity record and
 * every failure path are left out.
 */
export function nonStickyFloor(addresses: string[]): { store: session.Store; close(): void } {
  const nodes = addresses.map((a) => new RawNode(a));
  const pick = (sid: string) => {
    const i = sid.charCodeAt(sid.length - 1) % nodes.length;
    return [nodes[i], nodes[(i + 1) % nodes.length]];
  };
  class NonStickyFloor extends session.Store {
    get(sid: string, cb: (err: unknown, session?: session.SessionData | null) => void): void {
      const [primary, backup] = pick(sid);
      Promise.all([primary.get(sid), primary.get(`validity:${sid}`), backup.get(`bak:validity:${sid}`)]).then(
        ([s]) => cb(null, s ? JSON.parse(s.toString()) : null),
        cb,
      );
    }

    set(sid: string, sess: session.SessionData, cb?: (err?: unknown) => void): void {
      const [primary, backup] = pick(sid);
      const bytes = Buffer.from(JSON.stringify(sess));
      primary.setq(`validity:${sid}`, VALIDITY);
      const landed = primary.set(sid, bytes);
      backup.setq(`bak:${sid}`, bytes);
      backup.setq(`bak:validity:${sid}`, VALIDITY);
      landed.then(
        () => cb?.(),
        (e) => cb?.(e),
      );
    }

    touch(sid: string, _sess: session.SessionData, cb?: (err?: unknown) => void): void {
      const [primary, backup] = pick(sid);
      primary.setq(`validity:${sid}`, VALIDITY);
      backup.setq(`bak:validity:${sid}`, VALIDITY);
      cb?.();
    }

    destroy(_sid: string, cb?: (err?: unknown) => void): void {
      cb?.();
    }
  }
  return { store: new NonStickyFloor(), close: () => nodes.forEach((n) => n.close()) };
}
