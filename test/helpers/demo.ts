// Starts the local demo (demo-app/run-local.ts) as a child process on free loopback ports, for the demo and browser
// tests. It writes its state file (pids, ports, url) once everything answers; stop() sends SIGTERM (Ctrl-C).
import { type ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { DemoState } from '../../demo-app/run-local';
import { freePort } from './memcached';

const ROOT = path.resolve(__dirname, '..', '..');

export interface RunningDemo {
  state: DemoState;
  stateFile: string;
  proc: ChildProcess;
  output(): string;
  /** SIGTERM, then waits for the orchestrator to exit (it stops its children first). */
  stop(): Promise<number | null>;
}

export async function startDemo(env: Record<string, string> = {}, timeoutMs = 120_000): Promise<RunningDemo> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'express-msm-demo-test-'));
  const stateFile = path.join(dir, 'state.json');
  const ports: Record<string, string> = {};
  for (const k of ['DEMO_PORT', 'DEMO_APP_A_PORT', 'DEMO_APP_B_PORT', 'DEMO_N1_PORT', 'DEMO_N2_PORT'])
    ports[k] = String(await freePort());
  const proc = spawn(
    process.execPath,
    ['-r', path.join(ROOT, 'scripts', 'register.js'), path.join(ROOT, 'demo-app', 'run-local.ts')],
    {
      cwd: ROOT,
      env: { ...process.env, ...ports, DEMO_STATE_FILE: stateFile, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGTERM');
    const code = await exited;
    fs.rmSync(dir, { recursive: true, force: true });
    return code;
  };
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    if (proc.exitCode !== null) throw new Error(`the demo exited with ${proc.exitCode} while starting:\n${out}`);
    // The banner is printed before the state file is written; its last lines may still be on their way in the pipe.
    if (fs.existsSync(stateFile) && out.includes('Ctrl-C stops everything')) {
      try {
        const state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as DemoState;
        return { state, stateFile, proc, output: () => out, stop };
      } catch {
        /* being written */
      }
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  await stop();
  throw new Error(`the demo did not start within ${timeoutMs / 1000}s:\n${out}`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
