// Real memcached processes on free loopback ports, which tests may kill (-9), stop (SIGSTOP), continue and restart.
import { ChildProcess, execFileSync, spawn } from 'child_process';
import * as net from 'net';

/** The first candidate path that runs with `versionArg`. */
export function findBinary(candidates: Array<string | undefined>, versionArg: string): string | undefined {
  for (const p of candidates) {
    if (!p) continue;
    try {
      execFileSync(p, [versionArg], { stdio: 'ignore' });
      return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

export function memcachedBinary(): string {
  const found = findBinary([process.env.MEMCACHED_BIN, '/usr/bin/memcached', '/usr/local/bin/memcached'], '-V');
  if (found) return found;
  throw new Error('memcached is not installed: run `apt-get install -y memcached` (Debian/Ubuntu) or `bash .ci/run`');
}

/** Ports handed out by this process: the OS may offer a just-released port again before its user binds it. */
const handedOut = new Set<number>();

export async function freePort(): Promise<number> {
  for (;;) {
    const port = await osFreePort();
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

function osFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

export function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    const t = setTimeout(() => { s.destroy(); resolve(false); }, 200);
    s.once('connect', () => { clearTimeout(t); s.destroy(); resolve(true); });
    s.once('error', () => { clearTimeout(t); resolve(false); });
  });
}

export class MemcachedProcess {
  proc: ChildProcess | undefined;
  stopped = false;

  constructor(readonly port: number, readonly extraArgs: string[] = []) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const args = ['-l', '127.0.0.1', '-p', String(this.port), '-U', '0', '-m', '64', '-t', '2', '-c', '1024', ...this.extraArgs];
    if (process.getuid?.() === 0) args.push('-u', 'root');
    this.proc = spawn(memcachedBinary(), args, { stdio: 'ignore', detached: false });
    this.stopped = false;
    const until = Date.now() + 5000;
    while (Date.now() < until) {
      if (this.proc.exitCode !== null) throw new Error(`memcached on ${this.port} exited with ${this.proc.exitCode}`);
      if (await canConnect(this.port)) return this;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`memcached on ${this.port} did not start`);
  }

  /** kill -9: the node and everything in it are gone. */
  async kill(): Promise<void> {
    const p = this.proc;
    if (!p || p.exitCode !== null || p.signalCode) return;
    if (this.stopped) p.kill('SIGCONT');
    const exited = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await exited;
    this.proc = undefined;
  }

  /** SIGSTOP: accepts connections (kernel backlog) but never answers. */
  stop(): void {
    this.proc?.kill('SIGSTOP');
    this.stopped = true;
  }

  cont(): void {
    this.proc?.kill('SIGCONT');
    this.stopped = false;
  }

  async restart(): Promise<this> {
    await this.kill();
    return this.start();
  }
}

export async function startMemcacheds(n: number, extraArgs: string[] = []): Promise<MemcachedProcess[]> {
  const out: MemcachedProcess[] = [];
  for (let i = 0; i < n; i++) out.push(await new MemcachedProcess(await freePort(), extraArgs).start());
  return out;
}

export async function killAll(ps: MemcachedProcess[]): Promise<void> {
  await Promise.all(ps.map((p) => p.kill()));
}

/** `n1:127.0.0.1:p1,n2:...` */
export function nodesString(ps: MemcachedProcess[], ids = ps.map((_, i) => `n${i + 1}`)): string {
  return ps.map((p, i) => `${ids[i]}:127.0.0.1:${p.port}`).join(',');
}
