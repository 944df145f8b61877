// The connection to one memcached node. The only file that uses memjs (lib/memcached/tls.ts makes its servers), for
// the connection only: connect, SASL, reconnect on the next write, TLS. What is written on it and how answers are
// read is framing.ts's: memjs's response parser is replaced, and every close of a socket is reported.
import * as memjs from 'memjs';
import type * as net from 'net';
import type { ConnectionOptions } from 'tls';
import type { Logger } from '../core/logger';
import { memjsServer } from './tls';

export interface NodeConnectionOptions {
  host: string;
  port: number;
  /** ms: memjs's connect deadline. */
  operationTimeout: number;
  username?: string;
  password?: string;
  /** Set: every socket to the node is TLS with these options. */
  tls?: ConnectionOptions;
  logger: Logger;
  /** An established connection closed without close(): the node was killed, restarted, or dropped us. */
  onConnectionLost?: () => void;
}

/** What the connection reports to the framing above it. */
export interface ConnectionHandler {
  /** Bytes read from the node. */
  onData(data: Buffer): void;
  /** A new socket connected (and authenticated): what waits for it may be written. */
  writeWaiting(sock: net.Socket): void;
  /** A socket closed, with the error that closed it. */
  connectionLost(sock: net.Socket, error: Error): void;
}

/**
 * memjs's Server as used here: the connection (connect, SASL, reconnect on the next write) stays memjs's; requests,
 * responses and deadlines are framing.ts's.
 */
interface MemjsServer {
  connected: boolean;
  _socket?: net.Socket;
  sock(sasl: boolean, go: (socket: net.Socket) => void): void;
  responseHandler(data: Buffer): void;
  saslAuth(): void;
  error(err: unknown): void;
  emit(event: string): boolean;
}

export class Connection {
  /** close() was called: no new socket, no connection-lost report. */
  closed = false;
  private readonly server: MemjsServer;
  private handler!: ConnectionHandler;
  /** Sockets whose close we follow (memjs replaces the socket after a failure). */
  private readonly watched = new WeakSet<net.Socket>();
  private lastError: Error | undefined;
  /** The newest socket memjs made for us, and whether it is connected (and authenticated). */
  private current: net.Socket | undefined;
  private currentReady = false;
  /** memjs is connecting: operations wait in the queue (unwritten) for it. */
  private connecting = false;

  constructor(
    private readonly opts: NodeConnectionOptions,
    id: string,
  ) {
    const seconds = opts.operationTimeout / 1000;
    const quiet = { log: (...a: unknown[]) => opts.logger.debug(`memjs ${id}: ${a.join(' ')}`) };
    const options = {
      failover: false,
      timeout: seconds,
      conntimeout: seconds,
      keepAlive: true,
      logger: quiet as unknown as Console,
      ...(opts.username !== undefined ? { username: opts.username, password: opts.password } : {}),
    } as memjs.ClientOptions & memjs.ServerOptions;
    const client = new memjs.Client([memjsServer(opts.host, opts.port, options, opts.tls)], options);
    this.server = (client as unknown as { servers: MemjsServer[] }).servers[0];
    const memjsError = this.server.error;
    // Connection failures (socket error, connect timeout, SASL refused): memjs drops the socket, which then closes;
    // the close retries or fails what was queued on it (see watch), with this error.
    this.server.error = (err: unknown) => {
      this.lastError = err instanceof Error ? err : new Error(String(err));
      memjsError.call(this.server, err);
    };
  }

  /** Who reads the responses and hears of connects and closes. */
  attach(handler: ConnectionHandler): void {
    this.handler = handler;
    // memjs's 'data' listener calls server.responseHandler: the responses are parsed by the handler instead.
    this.server.responseHandler = (data) => handler.onData(data);
  }

  /** memjs's socket when it is connected (and authenticated), watched: requests may be written on it now. */
  writable(): net.Socket | undefined {
    const server = this.server;
    const sock = server._socket;
    if (server.connected && sock && !sock.destroyed) {
      this.watch(sock);
      return sock;
    }
    return undefined;
  }

  /**
   * memjs connects (and authenticates) unless it is connecting already; handler.writeWaiting runs once it has.
   * Returns the socket being connected, if memjs made one.
   */
  connect(): net.Socket | undefined {
    const server = this.server;
    if (!this.connecting) {
      this.connecting = true;
      server.sock(false, (s) => {
        this.connecting = false;
        this.watch(s);
        this.current = s;
        this.currentReady = true;
        this.handler.writeWaiting(s);
      });
    }
    const sock = server._socket;
    if (sock && sock !== this.current) {
      this.current = sock;
      this.currentReady = false;
    }
    if (sock) this.watch(sock);
    return sock;
  }

  /** `sock` is memjs's socket, or memjs has none: bytes left from an older read belong to no answer any more. */
  isLatest(sock: net.Socket): boolean {
    return !this.server._socket || this.server._socket === sock;
  }

  /** As memjs does: a connection that stopped answering is replaced; what is still queued on it is retried. */
  replaceStalled(): void {
    if (this.server._socket) this.server.error(new Error('socket timed out waiting on response.'));
  }

  // SASL answers, read by the framing, are memjs's.
  saslListed(): void {
    this.server.saslAuth();
  }

  authFailed(): void {
    this.server.error('Memcached server authentication failed!');
  }

  authenticated(): void {
    this.server.emit('authenticated');
  }

  /**
   * Destroys the socket; no new one from now on. memjs's own close() only ends the socket: one still connecting, or a
   * failed operation's retry, opens a new one that keeps the process alive.
   */
  destroy(error: Error): void {
    this.server.sock = () => this.server.error(error);
    this.server.error(error);
  }

  private watch(sock: net.Socket): void {
    if (this.watched.has(sock)) return;
    this.watched.add(sock);
    // Quiet commands get no answer to carry memcached's ACK: with Nagle on, the next small write would wait for
    // memcached's delayed ACK (40 ms).
    sock.setNoDelay(true);
    // Runs after memjs's own close handler (registered first), so a retry opens a new socket. Also covers a close
    // without an error (the node shut the connection), after which memjs would leave its callbacks waiting.
    // An established connection that closes without close(): the node was killed, restarted or dropped us.
    let established = !sock.connecting;
    if (!established) sock.once('connect', () => (established = true));
    sock.once('close', () => {
      if (established && !this.closed) this.opts.onConnectionLost?.();
      const error = this.lastError ?? new Error('connection closed');
      this.lastError = undefined;
      const current = this.current;
      if (current && current !== sock && !current.destroyed && !this.server._socket) {
        // memjs's close handler of an old socket forgets the newer one (whose connect would then never write what
        // waits for it): put it back.
        this.server._socket = current;
        this.server.connected = this.currentReady;
      }
      if (this.isLatest(sock)) this.connecting = false;
      this.handler.connectionLost(sock, error);
    });
  }
}
