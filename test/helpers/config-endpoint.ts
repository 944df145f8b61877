// A configuration endpoint as ElastiCache serves it (`config get cluster`), in front of the tests' own memcached
// processes: the test sets the node list, bumps the version, or makes the endpoint hang or refuse.
import * as net from 'net';
import * as tls from 'tls';
import { freePort } from './memcached';

export class ConfigEndpoint {
  version = 0;
  /** `hostname|ip|port` entries, in the order the endpoint lists them. */
  entries: string[] = [];
  /** Accept connections but never answer. */
  silent = false;
  /** Answer with this instead of the real reply. */
  garbage: string | undefined;
  requests = 0;
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();

  /** `tlsOptions`: the endpoint speaks TLS (as ElastiCache's does with in-transit encryption). */
  constructor(
    readonly port: number,
    private readonly tlsOptions?: tls.TlsOptions,
  ) {}

  static async start(tlsOptions?: tls.TlsOptions): Promise<ConfigEndpoint> {
    return new ConfigEndpoint(await freePort(), tlsOptions).listen();
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** One entry per memcached port; the hostname names the node (ids derive from it), the IP is where it listens. */
  setNodes(ports: number[]): void {
    this.entries = ports.map((p) => `node${p}.cluster.test|127.0.0.1|${p}`);
    this.version++;
  }

  listen(): Promise<this> {
    const onConnection = (s: net.Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
      s.on('error', () => undefined);
      let buf = '';
      s.on('data', (d) => {
        buf += d.toString('latin1');
        for (let i = buf.indexOf('\r\n'); i >= 0; i = buf.indexOf('\r\n')) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 2);
          this.requests++;
          if (this.silent) continue;
          if (line !== 'config get cluster') {
            s.write('ERROR\r\n');
            continue;
          }
          const data = this.garbage ?? `${this.version}\n${this.entries.join(' ')}\n`;
          s.write(`CONFIG cluster 0 ${Buffer.byteLength(data)}\r\n${data}\r\nEND\r\n`);
        }
      });
    };
    this.server = this.tlsOptions ? tls.createServer(this.tlsOptions, onConnection) : net.createServer(onConnection);
    return new Promise((resolve) => this.server!.listen(this.port, '127.0.0.1', () => resolve(this)));
  }

  /** Refuses connections from now on (and drops open ones). */
  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((r) => (this.server ? this.server.close(r) : r(undefined)));
    this.server = undefined;
  }
}
