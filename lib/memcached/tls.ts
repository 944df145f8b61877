// TLS to memcached. memjs opens its sockets with net.connect inside Server#sock and has no TLS option; a server made
// here gets a TLS socket instead, and what memjs does on it (connect, SASL, reconnects) stays memjs's.
import * as memjs from 'memjs';
import net = require('net'); // the module object itself: memjs's require('net') sees the same one
import * as tls from 'tls';

/**
 * A connected socket to host:port, TLS when `tlsOptions` is set; `onConnect` runs once requests may be written
 * (after the handshake). A handshake failure's error names the address and says it is TLS.
 */
export function connectSocket(
  host: string,
  port: number,
  tlsOptions: tls.ConnectionOptions | undefined,
  onConnect: () => void,
): net.Socket {
  if (!tlsOptions) return net.connect({ host, port }, onConnect);
  let secured = false;
  const sock = tls.connect({ ...tlsOptions, host, port }, () => {
    secured = true;
    onConnect();
  });
  // Registered before any caller's handler, so they all see the clearer message.
  sock.on('error', (e) => {
    if (!secured && !e.message.startsWith('TLS '))
      e.message = `TLS handshake with ${host}:${port} failed: ${e.message}`;
  });
  return sock;
}

type Sock = (this: unknown, sasl: boolean, go: (s: net.Socket) => void) => void;

/** A memjs Server for one node; its sockets are TLS when `tlsOptions` is set. */
export function memjsServer(
  host: string,
  port: number,
  options: memjs.ServerOptions & { username?: string; password?: string },
  tlsOptions: tls.ConnectionOptions | undefined,
): memjs.Server {
  const server = new memjs.Server(host, port, options.username, options.password, options);
  if (!tlsOptions) return server;
  const internals = server as unknown as { sock: Sock; _socket?: net.Socket };
  const plainSock = internals.sock;
  internals.sock = function (sasl, go) {
    if (internals._socket) return plainSock.call(this, sasl, go);
    // sock() opens a new socket with net.connect(port, host, onConnect) and nothing else in that synchronous call:
    // for that one call, net.connect opens a TLS socket (onConnect after the handshake, with the socket as `this`).
    const plainConnect = net.connect;
    (net as { connect: unknown }).connect = (p: number, h: string, onConnect: () => void) => {
      (net as { connect: unknown }).connect = plainConnect;
      const sock: net.Socket = connectSocket(h, p, tlsOptions, () => onConnect.call(sock));
      return sock;
    };
    try {
      return plainSock.call(this, sasl, go);
    } finally {
      (net as { connect: unknown }).connect = plainConnect;
    }
  };
  return server;
}
