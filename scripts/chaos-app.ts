// One app instance for the chaos run (scripts/chaos.ts): a child process, so it can be killed -9 and restarted.
// env: CHAOS_PORT, CHAOS_NODES (msm memcachedNodes) or CHAOS_DISCOVERY (host:port of a config endpoint),
// CHAOS_LOCKING (default all), CHAOS_ZONES (JSON, the zones option), CHAOS_BACKUP_COUNT.
import * as http from 'http';
import express from 'express';
import { memcachedSession } from '../lib/express/middleware';

const port = Number(process.env.CHAOS_PORT);
const mw = memcachedSession({
  // CHAOS_DISCOVERY: the nodes come from that configuration endpoint (autoDiscovery), polled every 200 ms.
  ...(process.env.CHAOS_DISCOVERY
    ? {
        autoDiscovery: {
          endpoint: process.env.CHAOS_DISCOVERY,
          intervalMs: Number(process.env.CHAOS_DISCOVERY_INTERVAL ?? 200),
        },
      }
    : { memcachedNodes: process.env.CHAOS_NODES! }),
  storageKeyPrefix: 'static:chaos',
  lockingMode: (process.env.CHAOS_LOCKING ?? 'all') as 'all',
  operationTimeout: Number(process.env.CHAOS_OP_TIMEOUT ?? 1000),
  // Zero-loss needs the backup written before the response is acknowledged (msm: sessionBackupAsync=false).
  sessionBackupAsync: process.env.CHAOS_BACKUP_ASYNC === '1',
  sessionBackupTimeout: Number(process.env.CHAOS_BACKUP_TIMEOUT ?? 1000),
  ...(process.env.CHAOS_ZONES ? { zones: JSON.parse(process.env.CHAOS_ZONES) as Record<string, string> } : {}),
  ...(process.env.CHAOS_BACKUP_COUNT ? { backupCount: Number(process.env.CHAOS_BACKUP_COUNT) } : {}),
  session: { secret: 'chaos-secret', resave: false, saveUninitialized: false, cookie: { maxAge: 3_600_000 } },
});
const app = express();
app.use(mw);
app.post('/inc', (req, res, next) => {
  const s = req.session as any;
  s.n = (s.n ?? 0) + 1;
  // Acknowledge only after the store has the session: express-session's own save runs after the response.
  req.session.save((err) => (err ? next(err) : res.json({ id: req.sessionID, n: s.n })));
});
app.get('/get', (req, res) => res.json({ id: req.sessionID, n: (req.session as any).n ?? null }));
app.get('/stats', (_req, res) => res.json(mw.store.stats()));
app.use((err: Error, _req: express.Request, res: express.Response, _next: express.NextFunction) => {
  if (!res.headersSent) res.status(503).json({ error: err.message });
});
const server = http.createServer(app);
server.keepAliveTimeout = 60_000;
// Ready once the nodes are known (with autoDiscovery: the endpoint has answered).
void mw.store.ready().then(() => server.listen(port, '127.0.0.1', () => process.send?.('ready')));
process.on('SIGTERM', () => {
  server.close();
  void mw.store.close().then(() => process.exit(0));
});
