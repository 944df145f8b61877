// An independent memcached text-protocol client (no memjs): tests read what actually landed, byte for byte,
// with TTLs (meta `mg`) and server counters (`stats`).
import * as net from 'net';

export class RawClient {
  private sock: net.Socket | undefined;
  private buf = Buffer.alloc(0);
  private waiting: Array<() => void> = [];
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly port: number,
    readonly host = '127.0.0.1',
  ) {}

  private connect(): Promise<net.Socket> {
    if (this.sock && !this.sock.destroyed) return Promise.resolve(this.sock);
    return new Promise((resolve, reject) => {
      const s = net.connect({ host: this.host, port: this.port });
      s.once('connect', () => resolve(s));
      s.once('error', reject);
      s.on('data', (d) => {
        this.buf = Buffer.concat([this.buf, d]);
        const w = this.waiting;
        this.waiting = [];
        w.forEach((f) => f());
      });
      s.on('close', () => {
        this.sock = undefined;
      });
      this.sock = s;
      this.buf = Buffer.alloc(0);
    });
  }

  private async readUntil(done: (b: Buffer) => number): Promise<Buffer> {
    for (;;) {
      const n = done(this.buf);
      if (n >= 0) {
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return out;
      }
      await new Promise<void>((r) => this.waiting.push(r));
    }
  }

  /** Runs one command and reads until the terminator matched by `done` (returns consumed length or -1). */
  private command(cmd: Buffer, done: (b: Buffer) => number, timeoutMs = 3000): Promise<Buffer> {
    const run = async () => {
      const s = await this.connect();
      s.write(cmd);
      let t: NodeJS.Timeout | undefined;
      try {
        return await Promise.race([
          this.readUntil(done),
          new Promise<never>(
            (_, rej) => (t = setTimeout(() => rej(new Error(`raw client ${this.port}: timeout`)), timeoutMs)),
          ),
        ]);
      } finally {
        clearTimeout(t);
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Value bytes or null. */
  async get(key: string): Promise<Buffer | null> {
    const r = await this.getWithFlags(key);
    return r ? r.value : null;
  }

  async getWithFlags(key: string): Promise<{ value: Buffer; flags: number } | null> {
    const out = await this.command(Buffer.from(`get ${key}\r\n`), endOfRetrieval);
    const head = out.subarray(0, out.indexOf('\r\n')).toString();
    if (head === 'END') return null;
    const [, , flags, bytes] = head.split(' ');
    const start = out.indexOf('\r\n') + 2;
    return { value: Buffer.from(out.subarray(start, start + Number(bytes))), flags: Number(flags) };
  }

  /** Remaining TTL in s (-1 = never) and CAS, via the meta command `mg <key> t c`. null when missing. */
  async meta(key: string): Promise<{ ttl: number; cas: string } | null> {
    const out = (await this.command(Buffer.from(`mg ${key} t c\r\n`), endOfLine)).toString().trim();
    if (out === 'EN') return null;
    const m = /^HD(.*)$/.exec(out);
    if (!m) throw new Error(`unexpected mg reply: ${out}`);
    const flags = Object.fromEntries(
      m[1]
        .trim()
        .split(' ')
        .map((f) => [f[0], f.slice(1)]),
    );
    return { ttl: Number(flags.t), cas: flags.c };
  }

  async set(key: string, value: Buffer | string, ttl = 0, flags = 0): Promise<void> {
    const v = Buffer.isBuffer(value) ? value : Buffer.from(value);
    const out = await this.command(
      Buffer.concat([Buffer.from(`set ${key} ${flags} ${ttl} ${v.length}\r\n`), v, Buffer.from('\r\n')]),
      endOfLine,
    );
    if (out.toString().trim() !== 'STORED') throw new Error(`set ${key}: ${out}`);
  }

  async delete(key: string): Promise<void> {
    await this.command(Buffer.from(`delete ${key}\r\n`), endOfLine);
  }

  /** `stats` or `stats <group>` (e.g. 'items': per slab class and LRU segment). */
  async stats(group = ''): Promise<Record<string, number>> {
    const out = (await this.command(Buffer.from(`stats${group ? ' ' + group : ''}\r\n`), endOfRetrieval)).toString();
    const r: Record<string, number> = {};
    for (const line of out.split('\r\n')) {
      const m = /^STAT (\S+) (\S+)$/.exec(line);
      if (m) r[m[1]] = Number(m[2]);
    }
    return r;
  }

  /**
   * All keys currently stored (`lru_crawler metadump hash` on its own socket: the hash-table walk is complete, the LRU
   * walk `metadump all` is not; retried while another crawl runs).
   */
  async keys(): Promise<string[]> {
    for (let attempt = 0; ; attempt++) {
      const out = await new Promise<string>((resolve, reject) => {
        const s = net.connect({ host: this.host, port: this.port }, () => s.write('lru_crawler metadump hash\r\n'));
        let b = Buffer.alloc(0);
        const t = setTimeout(() => {
          s.destroy();
          reject(new Error(`raw client ${this.port}: metadump timeout`));
        }, 5000);
        s.on('data', (d) => {
          b = Buffer.concat([b, d]);
          const n = endOfMetadump(b);
          if (n >= 0) {
            clearTimeout(t);
            s.destroy();
            resolve(b.subarray(0, n).toString());
          }
        });
        s.on('error', (e) => {
          clearTimeout(t);
          reject(e);
        });
      });
      if (/(^|\n)(BUSY|ERROR locked)/.test(out) && attempt < 50) {
        await new Promise((r) => setTimeout(r, 20));
        continue;
      }
      return out
        .split(/\r?\n/)
        .map((l) => /^key=(\S+)/.exec(l)?.[1])
        .filter((k): k is string => !!k)
        .map(decodeURIComponent);
    }
  }

  /** keys() without the store's maintenance keys: probe markers (`ping-<nodeId>`) and repair locks. */
  async sessionKeys(): Promise<string[]> {
    return (await this.keys()).filter((k) => !/(^|_)ping-[A-Za-z0-9_]+$|^lock:(.*_)?repair-/.test(k));
  }

  async flush(): Promise<void> {
    await this.command(Buffer.from('flush_all\r\n'), endOfLine);
  }

  close(): void {
    this.sock?.destroy();
    this.sock = undefined;
  }
}

/** metadump lines end with \n only; the reply ends with END\r\n (or an error line). */
function endOfMetadump(b: Buffer): number {
  const s = b.toString('latin1');
  const m = /(^|\n)(END|ERROR[^\r]*|CLIENT_ERROR[^\r]*|BUSY[^\r]*)\r\n/.exec(s);
  return m ? m.index + m[0].length : -1;
}

function endOfLine(b: Buffer): number {
  const i = b.indexOf('\r\n');
  return i < 0 ? -1 : i + 2;
}

/** `get`/`stats`/metadump replies end with END\r\n (a value can contain anything, so walk the VALUE framing). */
function endOfRetrieval(b: Buffer): number {
  let pos = 0;
  for (;;) {
    const eol = b.indexOf('\r\n', pos);
    if (eol < 0) return -1;
    const line = b.subarray(pos, eol).toString();
    if (
      line === 'END'
      || line.startsWith('ERROR')
      || line.startsWith('CLIENT_ERROR')
      || line.startsWith('SERVER_ERROR')
    )
      return eol + 2;
    if (line.startsWith('VALUE ')) {
      const bytes = Number(line.split(' ')[3]);
      const next = eol + 2 + bytes + 2;
      if (b.length < next) return -1;
      pos = next;
    } else pos = eol + 2;
  }
}
