// Starts one demo instance. Configuration: environment variables (demo-app/config.ts).
//   node -r ./scripts/register.js demo-app/server.ts
import type { AddressInfo } from 'net';
import { createApp } from './app';
import { readConfig } from './config';

const cfg = readConfig();
const { app, store } = createApp(cfg);

// Express 5 calls this with the listen error too (then 'error' below reports it).
const server = app.listen(cfg.port, cfg.host, (err?: Error) => {
  if (err) return;
  const { port } = server.address() as AddressInfo;
  console.log(
    `[${cfg.instanceName}] listening on http://${cfg.host}:${port} `
      + `(${cfg.sticky ? `sticky, route ${cfg.route}` : 'non-sticky'}, memcached ${cfg.memcachedNodes}, locking ${cfg.lockingMode})`,
  );
});
server.on('error', (err) => {
  console.error(`[${cfg.instanceName}] cannot listen on ${cfg.host}:${cfg.port}: ${err.message}`);
  process.exit(1);
});
// Behind a keep-alive balancer: let idle upstream connections outlive the balancer's own keepalive timeout.
server.keepAliveTimeout = 65_000;

let stopping = false;
async function shutdown(signal: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  console.log(`[${cfg.instanceName}] ${signal}: closing`);
  const force = setTimeout(() => process.exit(1), 10_000);
  force.unref();
  await new Promise<void>((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections();
  });
  await store.close();
  clearTimeout(force);
  process.exit(0);
}
process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
