// `npm run demo`: the seeds' experiment on this machine, without Docker. Starts two memcached nodes (n1, n2), two
// app instances (a, b) and a balancer on one port (Debian's nginx when installed, else a Node proxy; round robin, in
// sticky mode by the cookie's route), prints what to try, and stops everything on Ctrl-C / SIGTERM. Everything
// listens on 127.0.0.1 only.
//
// Environment (all optional):
//   DEMO_PORT=8080  DEMO_APP_A_PORT=3001  DEMO_APP_B_PORT=3002  DEMO_N1_PORT=21211  DEMO_N2_PORT=21212
//   DEMO_STICKY=1 (or --sticky)     sticky mode: routes a/b, the balancer routes by the cookie's `.route` suffix
//   DEMO_TLS=1                      memcached speaks TLS only (certificates made with openssl in a temp dir)
//   DEMO_BALANCER=nginx|node        default: nginx when installed, else node
//   DEMO_STATE_FILE=path            where pids and ports are written for `npm run demo:check` (demo-app/.run/state.json)
//   SESSION_SECRET                  shared by both instances (default: random per run)
import { type ChildProcess, spawn, spawnSync } from 'child_process';
import { randomBytes } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { type NodeBalancer, type Upstream, nginxConfig, startNodeBalancer } from './balancer';
import { canConnect } from '../test/helpers/memcached';
import { makeCerts } from '../test/helpers/tls';

const ROOT = path.resolve(__dirname, '..');
const HOST = '127.0.0.1';

export interface DemoState {
  url: string;
  sticky: boolean;
  orchestratorPid: number;
  balancer: { kind: 'nginx' | 'node'; pid: number; port: number };
  memcached: Record<string, { pid: number; port: number }>;
  apps: Record<string, { pid: number; port: number; route: string | null }>;
}

export const DEFAULT_STATE_FILE = path.join(ROOT, 'demo-app', '.run', 'state.json');

function envPort(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new Error(`${name} must be a port number (1-65535), got "${v}"`);
  return n;
}

function log(msg: string): void {
  process.stdout.write(`[demo] ${msg}\n`);
}

function findBinary(
  names: string[],
  dirs = ['/usr/bin', '/usr/sbin', '/usr/local/bin', '/usr/local/sbin'],
): string | undefined {
  for (const n of names) {
    if (n.includes('/')) {
      if (fs.existsSync(n)) return n;
      continue;
    }
    for (const d of [...(process.env.PATH ?? '').split(':').filter(Boolean), ...dirs]) {
      const p = path.join(d, n);
      try {
        fs.accessSync(p, fs.constants.X_OK);
        return p;
      } catch {
        /* next */
      }
    }
  }
  return undefined;
}

/** memcached's path; installs Debian's package when missing and running as root, else explains how. */
function ensureMemcached(): string {
  const found = findBinary([process.env.MEMCACHED_BIN ?? '', 'memcached'].filter(Boolean));
  if (found) return found;
  if (process.getuid?.() === 0 && findBinary(['apt-get'])) {
    log("memcached is not installed: installing Debian's package (apt-get install -y memcached) ...");
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    let r = spawnSync('apt-get', ['install', '-y', '-q', 'memcached'], { stdio: 'inherit', env });
    if (r.status !== 0) {
      spawnSync('apt-get', ['update', '-q'], { stdio: 'inherit', env });
      r = spawnSync('apt-get', ['install', '-y', '-q', 'memcached'], { stdio: 'inherit', env });
    }
    // Debian starts a system memcached on 11211 after installing; the demo uses its own ports and processes.
    const now = findBinary(['memcached']);
    if (now) return now;
  }
  console.error(
    'memcached is not installed. Install it and run the demo again:\n'
      + '  Debian/Ubuntu: sudo apt-get install -y memcached\n'
      + '  macOS:         brew install memcached\n'
      + '(`npm run demo` installs it by itself when run as root on Debian/Ubuntu.)',
  );
  process.exit(1);
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, HOST, () => s.close(() => resolve(true)));
  });
}

async function waitFor(
  what: string,
  ok: () => Promise<boolean>,
  proc: ChildProcess | undefined,
  timeoutMs: number,
): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (proc && (proc.exitCode !== null || proc.signalCode))
      throw new Error(`${what} exited (${proc.exitCode ?? proc.signalCode}) while starting`);
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not become ready within ${timeoutMs / 1000}s`);
}

async function httpOk(port: number, p: string): Promise<boolean> {
  try {
    const res = await fetch(`http://${HOST}:${port}${p}`, { signal: AbortSignal.timeout(2000) });
    await res.arrayBuffer();
    return res.ok;
  } catch {
    return false;
  }
}

/** Prefixes a child's output lines with its name. */
function pipeOutput(name: string, proc: ChildProcess): void {
  for (const stream of [proc.stdout, proc.stderr]) {
    if (!stream) continue;
    let buf = '';
    stream.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (!line.startsWith(`[${name}]`)) process.stdout.write(`[${name}] ${line}\n`);
        else process.stdout.write(line + '\n');
      }
    });
  }
}

async function main(): Promise<void> {
  const sticky = process.argv.includes('--sticky') || /^(1|true|yes|on)$/i.test(process.env.DEMO_STICKY ?? '');
  const tls = /^(1|true|yes|on)$/i.test(process.env.DEMO_TLS ?? '');
  const ports = {
    balancer: envPort('DEMO_PORT', 8080),
    a: envPort('DEMO_APP_A_PORT', 3001),
    b: envPort('DEMO_APP_B_PORT', 3002),
    n1: envPort('DEMO_N1_PORT', 21211),
    n2: envPort('DEMO_N2_PORT', 21212),
  };
  const stateFile = path.resolve(process.env.DEMO_STATE_FILE || DEFAULT_STATE_FILE);
  const memcachedBin = ensureMemcached();

  const envOf: Record<string, string> = {
    DEMO_PORT: 'balancer',
    DEMO_APP_A_PORT: 'a',
    DEMO_APP_B_PORT: 'b',
    DEMO_N1_PORT: 'n1',
    DEMO_N2_PORT: 'n2',
  };
  for (const [env, key] of Object.entries(envOf)) {
    const port = ports[key as keyof typeof ports];
    if (!(await portFree(port))) {
      console.error(
        `Port ${port} on ${HOST} (${key}) is in use. Is a demo already running? Choose another with ${env}=<port>.`,
      );
      process.exit(1);
    }
  }

  const children: Array<{ name: string; proc: ChildProcess }> = [];
  let nodeBalancer: NodeBalancer | undefined;
  let nginxDir: string | undefined;
  let certsDir: string | undefined;
  let stopping = false;

  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    log('stopping ...');
    try {
      fs.rmSync(stateFile, { force: true });
    } catch {
      /* ignore */
    }
    if (nodeBalancer) await nodeBalancer.close();
    const alive = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;
    const exited = (p: ChildProcess) => (alive(p) ? new Promise((r) => p.once('exit', r)) : Promise.resolve());
    // Balancer first (nginx: graceful quit), then the apps (graceful: server.close, store.close), then memcached.
    const order = [
      ...children.filter((c) => c.name === 'nginx'),
      ...children.filter((c) => c.name === 'a' || c.name === 'b'),
      ...children.filter((c) => c.name.startsWith('n') && c.name !== 'nginx'),
    ];
    for (const group of [['nginx'], ['a', 'b'], ['n1', 'n2']]) {
      const procs = order.filter((c) => group.includes(c.name)).map((c) => c.proc);
      for (const p of procs) if (alive(p)) p.kill(group[0] === 'nginx' ? 'SIGQUIT' : 'SIGTERM');
      await Promise.race([Promise.all(procs.map(exited)), new Promise((r) => setTimeout(r, 5000))]);
      for (const p of procs) if (alive(p)) p.kill('SIGKILL');
    }
    for (const dir of [nginxDir, certsDir]) if (dir) fs.rmSync(dir, { recursive: true, force: true });
    log('stopped');
    process.exit(code);
  };
  // Last resort (a crash of this process): no child outlives it.
  process.on('exit', () => {
    for (const { proc } of children) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  process.on('SIGINT', () => void stop(0));
  process.on('SIGTERM', () => void stop(0));
  process.on('SIGHUP', () => void stop(0));

  const spawnChild = (name: string, cmd: string, args: string[], env?: NodeJS.ProcessEnv): ChildProcess => {
    // Own process groups: Ctrl-C reaches only this orchestrator, which stops the balancer, then the apps (they flush
    // queued backups to memcached), then memcached.
    const proc = spawn(cmd, args, {
      cwd: ROOT,
      env: env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    children.push({ name, proc });
    pipeOutput(name, proc);
    proc.on('exit', (code, signal) => {
      if (!stopping)
        log(`${name} exited (${signal ?? `code ${code}`}); the others keep running. Ctrl-C stops the demo.`);
    });
    return proc;
  };

  try {
    // memcached n1, n2
    const certs = tls ? makeCerts() : undefined;
    certsDir = certs?.dir;
    for (const id of ['n1', 'n2'] as const) {
      const args = ['-l', HOST, '-p', String(ports[id]), '-U', '0', '-m', '64', '-t', '2', '-c', '1024'];
      if (certs) args.push('-Z', '-o', `ssl_chain_cert=${certs.serverCert},ssl_key=${certs.serverKey}`);
      if (process.getuid?.() === 0) args.push('-u', 'root');
      const proc = spawnChild(id, memcachedBin, args);
      await waitFor(`memcached ${id} (port ${ports[id]})`, () => canConnect(ports[id], HOST, 500), proc, 15_000);
    }
    const memcachedNodes = `n1:${HOST}:${ports.n1},n2:${HOST}:${ports.n2}`;
    const secret = process.env.SESSION_SECRET || randomBytes(24).toString('base64url');

    // app instances a, b
    const apps: Array<{ name: string; port: number; proc: ChildProcess }> = [];
    for (const name of ['a', 'b'] as const) {
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        INSTANCE_NAME: name,
        HOST,
        PORT: String(ports[name]),
        MEMCACHED_NODES: memcachedNodes,
        ...(certs ? { MEMCACHED_TLS_CA: certs.ca } : {}),
        STICKY: sticky ? 'true' : 'false',
        ROUTE: name,
        SESSION_SECRET: secret,
      };
      const proc = spawnChild(
        name,
        process.execPath,
        ['-r', path.join(ROOT, 'scripts', 'register.js'), path.join(ROOT, 'demo-app', 'server.ts')],
        env,
      );
      apps.push({ name, port: ports[name], proc });
    }
    for (const a of apps)
      await waitFor(`app ${a.name} (port ${a.port})`, () => httpOk(a.port, '/healthz'), a.proc, 60_000);

    // balancer
    const upstreams: Upstream[] = apps.map((a) => ({ route: a.name, host: HOST, port: a.port }));
    const want = (process.env.DEMO_BALANCER ?? '').toLowerCase();
    const nginxBin = want === 'node' ? undefined : findBinary([process.env.NGINX_BIN ?? '', 'nginx'].filter(Boolean));
    if (want === 'nginx' && !nginxBin)
      throw new Error('DEMO_BALANCER=nginx but nginx is not installed (apt-get install -y nginx)');
    let balancer: DemoState['balancer'] | undefined;
    if (nginxBin) {
      nginxDir = fs.mkdtempSync(path.join(os.tmpdir(), 'express-msm-nginx-'));
      const conf = nginxConfig({
        listen: `${HOST}:${ports.balancer}`,
        upstreams,
        local: { dir: nginxDir, user: process.getuid?.() === 0 ? 'root' : undefined },
      });
      fs.writeFileSync(path.join(nginxDir, 'nginx.conf'), conf);
      const proc = spawnChild('nginx', nginxBin, [
        '-p',
        nginxDir,
        '-c',
        path.join(nginxDir, 'nginx.conf'),
        '-e',
        path.join(nginxDir, 'error.log'),
        '-g',
        'daemon off;',
      ]);
      try {
        await waitFor(`nginx (port ${ports.balancer})`, () => canConnect(ports.balancer, HOST, 500), proc, 15_000);
        balancer = { kind: 'nginx', pid: proc.pid!, port: ports.balancer };
      } catch (e) {
        let errors = '';
        try {
          errors = fs.readFileSync(path.join(nginxDir, 'error.log'), 'utf8').trim();
        } catch {
          /* none */
        }
        if (want === 'nginx') throw new Error(`${(e as Error).message}\n${errors}`);
        log(
          `nginx did not start (${(e as Error).message}${errors ? `: ${errors}` : ''}); using the Node balancer instead`,
        );
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
    }
    if (!balancer) {
      nodeBalancer = await startNodeBalancer({ host: HOST, port: ports.balancer, upstreams });
      balancer = { kind: 'node', pid: process.pid, port: nodeBalancer.port };
    }
    await waitFor('balancer', () => httpOk(ports.balancer, '/healthz'), undefined, 30_000);

    const url = `http://${HOST}:${ports.balancer}/`;
    const pid = (name: string) => children.find((c) => c.name === name)!.proc.pid!;
    const state: DemoState = {
      url,
      sticky,
      orchestratorPid: process.pid,
      balancer,
      memcached: { n1: { pid: pid('n1'), port: ports.n1 }, n2: { pid: pid('n2'), port: ports.n2 } },
      apps: Object.fromEntries(
        apps.map((a) => [a.name, { pid: a.proc.pid!, port: a.port, route: sticky ? a.name : null }]),
      ),
    };

    process.stdout.write(`
express-msm demo (${sticky ? "sticky: routes a/b, the balancer follows the cookie's .route suffix" : 'non-sticky: sessions live in memcached'}${tls ? '; TLS to memcached' : ''})
  balancer  ${url}  (${balancer.kind}, ${sticky ? 'by the route in the session cookie; new sessions round robin' : 'round robin over a and b'})
  app a     http://${HOST}:${ports.a}/  pid ${state.apps.a.pid}
  app b     http://${HOST}:${ports.b}/  pid ${state.apps.b.pid}
  memcached${tls ? ' (TLS)' : ''} n1 ${HOST}:${ports.n1} pid ${state.memcached.n1.pid}, n2 ${HOST}:${ports.n2} pid ${state.memcached.n2.pid}

Try:
  1. Open ${url} and reload a few times: ${
    sticky
      ? 'the same instance answers (its route is in the cookie); the session id and creation time stay.'
      : 'the instance (and its colour) alternates a/b, the session id and creation time stay, the counter goes on.'
  }
  2. Kill the memcached node the page names, e.g. n1:  kill -9 ${state.memcached.n1.pid}
     Reload: the session lives on (${sticky ? 'sticky: the instance holds it; a new memcached copy is written' : "it moves to the node holding its backup; the id's node suffix changes"}).
  3. Kill app a:  kill -9 ${state.apps.a.pid}
     Reload: b answers every request with the same session${sticky ? ' (it takes over route a: the id ends in .b)' : ''}.
  Or let it run by itself:  npm run demo:check      (it kills n1 and app a: restart the demo afterwards)
  Metrics: ${url}metrics      Ctrl-C stops everything.
`);
    // Written after the banner: the state file says the demo is ready, with everything it printed.
    fs.mkdirSync(path.dirname(stateFile), { recursive: true });
    fs.writeFileSync(stateFile, JSON.stringify(state, null, 2) + '\n');
  } catch (e) {
    console.error(`[demo] ${(e as Error).message}`);
    await stop(1);
  }
}

if (require.main === module) {
  void main();
}
