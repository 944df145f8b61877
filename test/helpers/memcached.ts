// Real memcached processes on free loopback ports, which tests may kill (-9), stop (SIGSTOP), continue and restart.
import { type ChildProcess, execFileSync, spawn } from 'child_process';
import * as fs from 'fs';
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

/**
 * Ports for servers the tests start themselves (memcached, the demo, apps). They come from outside the kernel's
 * ephemeral range: a port the OS offers for listen(0) can be taken, before our process binds it, by another jest
 * worker's supertest server or by any outgoing connection's source port (CI once lost the demo's n2 port that way).
 * Each jest worker scans its own slice of that range, so workers never hand out the same port, and a port is
 * handed out once per process, so a killed memcached can be restarted on its port without a later test taking it.
 */
const handedOut = new Set<number>();
const SLICES = 16;

function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo > 0 && hi >= lo) return [lo, hi];
  } catch {
    /* not Linux */
  }
  return [32768, 60999];
}

/** [first, end) of the ports this process may hand out. */
function portSlice(): [number, number] {
  const [lo, hi] = ephemeralRange();
  const [poolLo, poolHi] = lo - 10000 >= 4000 ? [10000, lo] : [hi + 1, 65536];
  const size = Math.floor((poolHi - poolLo) / SLICES);
  const slice = Number(process.env.JEST_WORKER_ID ?? 0) % SLICES;
  return [poolLo + slice * size, poolLo + (slice + 1) * size];
}

export async function freePort(): Promise<number> {
  const [first, end] = portSlice();
  const size = end - first;
  const start = Math.floor(Math.random() * size);
  for (let i = 0; i < size; i++) {
    const port = first + ((start + i) % size);
    if (handedOut.has(port)) continue;
    if (!(await canBind(port))) continue;
    handedOut.add(port);
    return port;
  }
  throw new Error(`no free port in ${first}-${end - 1}`);
}

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** Whether a TCP connection to host:port opens within `timeoutMs` (a server is listening and accepting). */
export function canConnect(port: number, host = '127.0.0.1', timeoutMs = 200): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const t = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, timeoutMs);
    s.once('connect', () => {
      clearTimeout(t);
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      clearTimeout(t);
      resolve(false);
    });
  });
}

export class MemcachedProcess {
  proc: ChildProcess | undefined;
  stopped = false;

  constructor(
    readonly port: number,
    readonly extraArgs: string[] = [],
    readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    const args = [
      '-l',
      '127.0.0.1',
      '-p',
      String(this.port),
      '-U',
      '0',
      '-m',
      '64',
      '-t',
      '2',
      '-c',
      '1024',
      ...this.extraArgs,
    ];
    if (process.getuid?.() === 0) args.push('-u', 'root');
    this.proc = spawn(memcachedBinary(), args, { stdio: 'ignore', detached: false, env: this.env });
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
  /**
   * SIGSTOP, then waits until every thread is stopped: kill() only queues the signal, and on a busy machine a
   * worker thread was seen answering requests for a while after it (which made a "stopped" node answer in tests).
   */
  async stop(): Promise<void> {
    const p = this.proc;
    if (!p?.pid) return;
    p.kill('SIGSTOP');
    this.stopped = true;
    const until = Date.now() + 5000;
    while (!allThreadsStopped(p.pid)) {
      if (Date.now() > until) throw new Error(`memcached on ${this.port} did not stop`);
      await new Promise((r) => setTimeout(r, 2));
    }
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

/** Linux: every thread of `pid` in state T (stopped). Elsewhere (no /proc): assume the signal took effect. */
function allThreadsStopped(pid: number): boolean {
  let tasks: string[];
  try {
    tasks = fs.readdirSync(`/proc/${pid}/task`);
  } catch {
    return true;
  }
  return tasks.every((t) => {
    try {
      // state is the field after the parenthesised command name
      const stat = fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
      return /^[Tt]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
    } catch {
      return true;
    }
  });
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
