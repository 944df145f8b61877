// The demo app: the seeds' index.jsp for express-msm. Each page shows which instance served it, the session id,
// its creation time, a visit counter and the memcached node holding the session (and its backup node).
import express from 'express';
import type { NextFunction, Request, Response } from 'express';
import * as path from 'path';
import { Registry } from 'prom-client';
import { registerMetrics } from '../lib';
import type { MemcachedStore } from '../lib';
import type { DemoConfig } from './config';
import { colorFor } from './config';
import { demoSession } from './session';

declare module 'express-session' {
  interface SessionData {
    createdAt: number;
    views: number;
    cart: string[];
    history: string[];
  }
}

export interface PageInfo {
  instance: string;
  color: string;
  sticky: boolean;
  route: string | null;
  sessionId: string;
  /** The id without node and route: stays when the session moves to another node or instance. */
  sessionKey: string;
  createdAt: string;
  views: number;
  cart: string[];
  /** Instances that served this session's last requests, oldest first. */
  history: string[];
  /** Non-sticky: the node holding the session; sticky: the node holding its memcached copy. */
  node: { id: string; address: string; available: boolean } | null;
  /** Non-sticky: the node holding the `bak:` copy (msm's next available node); sticky: where the copy moves if `node` fails. */
  backup: { id: string; address: string } | null;
}

export interface DemoApp {
  app: express.Express;
  store: MemcachedStore;
}

const ITEMS = ['apple', 'book', 'coffee', 'dice', 'espresso cup', 'flute'];

export function createApp(cfg: DemoConfig): DemoApp {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', 'loopback, uniquelocal');

  // Before the session middleware: health checks never touch memcached.
  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send(`ok ${cfg.instanceName}\n`);
  });

  const session = demoSession(cfg);
  const store = session.store;
  // store.stats() by Accept (or ?format=json|html|prometheus): a table for browsers, JSON for scripts (and for
  // `*/*`), Prometheus text for scrapers (text/plain, openmetrics). Before the session middleware: scrapes neither
  // create nor load sessions.
  const registry = new Registry();
  registry.setDefaultLabels({ instance_name: cfg.instanceName });
  registerMetrics(store, registry);
  app.get('/metrics', async (req, res, next) => {
    res.set('Cache-Control', 'no-store');
    res.vary('Accept');
    const accept = req.get('accept') ?? '';
    // Scrapers send versioned types (text/plain;version=0.0.4) that content negotiation would not match.
    const format =
      typeof req.query.format === 'string'
        ? req.query.format
        : /text\/plain|openmetrics/.test(accept) && !/text\/html/.test(accept)
          ? 'prometheus'
          : req.accepts(['application/json', 'text/html']) === 'text/html'
            ? 'html'
            : 'json';
    const body = { instance: cfg.instanceName, sticky: cfg.sticky, route: cfg.route ?? null, stats: store.stats() };
    if (format === 'prometheus') {
      try {
        return res.type(registry.contentType).send(await registry.metrics());
      } catch (e) {
        return next(e);
      }
    }
    if (format === 'html') return res.type('html').send(renderMetrics(body, cfg.color));
    res.json(body);
  });

  app.use(session);

  // Matched by requestUriIgnorePattern: no session is loaded or stored for it, and no cookie is sent.
  app.use('/static', express.static(path.join(__dirname, 'static'), { maxAge: '1d', immutable: true }));

  app.get('/', (req, res) => {
    const s = req.session;
    s.createdAt ??= Date.now();
    s.views = (s.views ?? 0) + 1;
    s.cart ??= [];
    s.history = [...(s.history ?? []), cfg.instanceName].slice(-8);
    const info = pageInfo(req, cfg, store);
    res.set('Cache-Control', 'no-store');
    res.set('X-Instance', cfg.instanceName);
    if (req.query.format === 'json') return res.json(info);
    res.type('html').send(renderPage(info));
  });

  // Modifies the session; serialised across instances by lockingMode 'uriPattern:/cart.*' in non-sticky mode.
  app.post('/cart/add', express.urlencoded({ extended: false, limit: '2kb' }), (req, res) => {
    const s = req.session;
    s.createdAt ??= Date.now();
    const wanted = typeof req.body?.item === 'string' ? req.body.item.slice(0, 40) : '';
    const item = wanted || ITEMS[(s.cart?.length ?? 0) % ITEMS.length];
    s.cart = [...(s.cart ?? []), item].slice(-50);
    s.history = [...(s.history ?? []), cfg.instanceName].slice(-8);
    res.set('X-Instance', cfg.instanceName);
    if (req.query.format === 'json' || req.get('accept')?.includes('application/json')) {
      return res.json({ instance: cfg.instanceName, sessionId: req.sessionID, cart: s.cart });
    }
    res.redirect(303, '/');
  });

  const logout = (req: Request, res: Response, next: NextFunction) => {
    if (!req.session) return res.redirect(303, '/');
    req.session.destroy((err) => {
      if (err) return next(err);
      res.clearCookie(cfg.cookieName);
      if (req.query.format === 'json') return res.json({ instance: cfg.instanceName, loggedOut: true });
      res.redirect(303, '/');
    });
  };
  app.post('/logout', logout);
  app.get('/logout', logout);

  app.use((err: Error, _req: Request, res: Response, _next: NextFunction) => {
    console.error(`[${cfg.instanceName}]`, err);
    res.status(500).type('text/plain').send(`instance ${cfg.instanceName}: ${err.message}\n`);
  });

  return { app, store };
}

export function pageInfo(req: Request, cfg: DemoConfig, store: MemcachedStore): PageInfo {
  const s = req.session;
  const sid = store.idFormat.parse(req.sessionID);
  const nodes = store.nodes.snapshot();
  let node: PageInfo['node'] = null;
  let backup: PageInfo['backup'] = null;
  if (sid?.nodeId && nodes[sid.nodeId]) {
    node = { id: sid.nodeId, address: nodes[sid.nodeId].address, available: nodes[sid.nodeId].available };
    const b = store.nodes.nextAvailable(sid.nodeId);
    if (b && nodes[b]) backup = { id: b, address: nodes[b].address };
  }
  return {
    instance: cfg.instanceName,
    color: cfg.color,
    sticky: cfg.sticky,
    route: cfg.route ?? null,
    sessionId: req.sessionID,
    sessionKey: sid?.random ?? req.sessionID,
    createdAt: new Date(s.createdAt ?? Date.now()).toISOString(),
    views: s.views ?? 0,
    cart: s.cart ?? [],
    history: s.history ?? [],
    node,
    backup,
  };
}

function esc(v: unknown): string {
  return String(v).replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!,
  );
}

export function renderPage(p: PageInfo): string {
  const nodeText = p.node ? `${p.node.id} (${p.node.address})` : 'none';
  const backupText = p.backup ? `${p.backup.id} (${p.backup.address})` : 'none available';
  const mode = p.sticky
    ? `sticky: the session lives in instance ${esc(p.instance)}'s memory (route ${esc(p.route)}); memcached keeps a copy`
    : 'non-sticky: the session lives in memcached; instances keep nothing between requests';
  // Each badge in its instance's colour (this instance's may be set by INSTANCE_COLOR).
  const history = p.history
    .map((h) => `<span class="h" style="background:${esc(h === p.instance ? p.color : colorFor(h))}">${esc(h)}</span>`)
    .join(' ');
  const hint = p.sticky
    ? `Reload: instance ${esc(p.instance)} answers every time (the balancer follows the route .${esc(p.route)} in the cookie);
the session id and creation time stay and the counter goes on. Kill instance ${esc(p.instance)}: the other one takes the
session over from memcached (its id then ends in its own route). Kill the memcached node holding the copy: a new copy is written.`
    : `Reload: the instance changes, the session id and creation time stay and the counter goes on.
Kill the memcached node holding the session or one instance: the session lives on.`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>express-msm demo: instance ${esc(p.instance)}</title>
<link rel="icon" href="/static/logo.png">
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 16px/1.45 system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #222; }
  header { background: ${esc(p.color)}; color: #fff; padding: 18px 28px; display: flex; align-items: center; gap: 16px; }
  header img { width: 48px; height: 48px; }
  header h1 { margin: 0; font-size: 28px; }
  header .mode { opacity: .9; font-size: 14px; }
  main { padding: 20px 28px; max-width: 900px; }
  table { border-collapse: collapse; background: #fff; width: 100%; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
  th, td { text-align: left; padding: 9px 14px; border-bottom: 1px solid #eee; vertical-align: top; }
  th { width: 210px; color: #555; font-weight: 600; }
  code { font-size: 15px; }
  .h { display: inline-block; padding: 1px 7px; margin: 1px; border-radius: 4px; color: #fff; font-weight: 600; }
  .actions { margin-top: 18px; display: flex; gap: 10px; flex-wrap: wrap; }
  button, .btn { font: inherit; padding: 7px 14px; border-radius: 5px; border: 1px solid #999; background: #fff; cursor: pointer; text-decoration: none; color: #222; }
  .hint { color: #555; font-size: 14px; margin-top: 18px; }
</style></head>
<body>
<header>
  <img src="/static/logo.png" alt="">
  <div><h1>Served by instance <span id="instance">${esc(p.instance)}</span></h1>
  <div class="mode">${mode}</div></div>
</header>
<main>
<table>
  <tr><th>Session id</th><td><code id="session-id">${esc(p.sessionId)}</code></td></tr>
  <tr><th>Created</th><td id="created-at">${esc(p.createdAt)}</td></tr>
  <tr><th>Visits</th><td id="views">${esc(p.views)}</td></tr>
  <tr><th>${p.sticky ? 'Memcached copy on' : 'Memcached node'}</th><td id="node">${esc(nodeText)}</td></tr>
  <tr><th>${p.sticky ? 'Next node (if it fails)' : 'Backup node'}</th><td id="backup">${esc(backupText)}</td></tr>
  <tr><th>Cart</th><td id="cart">${p.cart.length ? esc(p.cart.join(', ')) : '<i>empty</i>'}</td></tr>
  <tr><th>Served by (last requests)</th><td id="history">${history}</td></tr>
</table>
<div class="actions">
  <a class="btn" href="/">Reload</a>
  <form method="post" action="/cart/add"><button type="submit">Add to cart</button></form>
  <form method="post" action="/logout"><button type="submit">Log out (new session)</button></form>
  <a class="btn" href="/metrics">Metrics</a>
</div>
<p class="hint" id="hint">${hint}</p>
</main>
</body></html>
`;
}

/** /metrics for a browser: store.stats() as tables (counters, timings, nodes) instead of one line of JSON. */
export function renderMetrics(
  m: { instance: string; sticky: boolean; route: string | null; stats: Record<string, unknown> },
  color: string,
): string {
  const cell = (v: unknown) =>
    `<td>${esc(
      typeof v === 'number' && !Number.isInteger(v)
        ? v.toFixed(2)
        : typeof v === 'object' && v !== null
          ? JSON.stringify(v)
          : (v ?? ''),
    )}</td>`;
  const table = (caption: string, rows: Array<[string, unknown]>) =>
    `<table><caption>${esc(caption)}</caption>${rows.map(([k, v]) => `<tr><th>${esc(k)}</th>${cell(v)}</tr>`).join('')}</table>`;
  /** Rows of objects (per node, per timing) as one table with a column per field. */
  const flat = (o: Record<string, unknown>): Record<string, unknown> =>
    Object.fromEntries(
      Object.entries(o).flatMap(([k, v]) =>
        v && typeof v === 'object' ? Object.entries(v).map(([k2, v2]) => [`${k} ${k2}`, v2]) : [[k, v]],
      ),
    );
  const grid = (caption: string, rows: Record<string, unknown>) => {
    const entries = Object.entries(rows)
      .filter(([, v]) => v && typeof v === 'object')
      .map(([k, v]) => [k, flat(v as Record<string, unknown>)]) as Array<[string, Record<string, unknown>]>;
    if (!entries.length) return '';
    const cols = [...new Set(entries.flatMap(([, v]) => Object.keys(v)))];
    return (
      `<table><caption>${esc(caption)}</caption><tr><th></th>${cols.map((c) => `<th>${esc(c)}</th>`).join('')}</tr>`
      + entries.map(([k, v]) => `<tr><th>${esc(k)}</th>${cols.map((c) => cell(v[c])).join('')}</tr>`).join('')
      + '</table>'
    );
  };
  const { timings, nodes, ...counters } = m.stats as {
    timings?: Record<string, unknown>;
    nodes?: Record<string, unknown>;
  };
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>express-msm demo: metrics of instance ${esc(m.instance)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #222; }
  header { background: ${esc(color)}; color: #fff; padding: 14px 28px; }
  h1 { margin: 0; font-size: 24px; }
  main { padding: 16px 28px; }
  table { border-collapse: collapse; background: #fff; margin: 0 0 18px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
  caption { text-align: left; font-weight: 600; padding: 6px 0; }
  th, td { text-align: left; padding: 5px 12px; border-bottom: 1px solid #eee; }
  td { font-variant-numeric: tabular-nums; }
</style></head>
<body>
<header><h1>Metrics of instance <span id="instance">${esc(m.instance)}</span></h1>
<div>${m.sticky ? `sticky, route ${esc(m.route)}` : 'non-sticky'}: <code>store.stats()</code>; reload for the other instance's.
<a style="color:#fff" href="/metrics?format=json">JSON</a> · <a style="color:#fff" href="/metrics?format=prometheus">Prometheus</a></div></header>
<main>
${table('Counters', Object.entries(counters))}
${grid('Nodes', nodes ?? {})}
${grid('Timings', timings ?? {})}
<p><a href="/">Back to the page</a></p>
</main>
</body></html>
`;
}
