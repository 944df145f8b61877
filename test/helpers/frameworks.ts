// App instances where the store cannot change the session cookie, each in its own node process (as in production;
// @fastify/cookie also needs a real ESM loader, which jest's VM does not give): a plain node http server with
// express-session (no req.res, no applyPendingIdChange) and Fastify 5 with @fastify/cookie + @fastify/session.
// Each serves /inc (increments a counter in the session), /get ({ id, n } with the id the framework kept), /destroy,
// /__stats (store.stats()) and /__ready (store.ready()).
import { type ChildProcess, spawn } from 'child_process';
import * as http from 'http';
import * as path from 'path';
import type { MemcachedStoreOptions } from '../../lib';

export type Framework = 'plain' | 'fastify';

const ROOT = path.join(__dirname, '..', '..');

export interface FrameworkServer {
  port: number;
  proc: ChildProcess;
  stats(): Promise<Record<string, any>>;
  ready(): Promise<void>;
  close(): Promise<void>;
}

/** `maxAge`: the session cookie's, in ms (60 s unless given). */
export async function startServer(
  kind: Framework,
  options: MemcachedStoreOptions,
  maxAge = 60_000,
): Promise<FrameworkServer> {
  const proc = spawn(
    process.execPath,
    ['-r', path.join(ROOT, 'scripts', 'register.js'), path.join(__dirname, 'framework-app.ts')],
    {
      cwd: ROOT,
      env: { ...process.env, MSM_FRAMEWORK: kind, MSM_OPTIONS: JSON.stringify(options), MSM_MAX_AGE: String(maxAge) },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let err = '';
  proc.stderr!.on('data', (d) => (err += d));
  const port = await new Promise<number>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`${kind} app did not start: ${err}`)), 60_000);
    proc.stdout!.on('data', (d) => {
      out += d;
      const m = /LISTENING (\d+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(Number(m[1]));
      }
    });
    proc.once('exit', (code) => reject(new Error(`${kind} app exited with ${code}: ${err}`)));
  });
  return {
    port,
    proc,
    stats: async () => (await get(port, '/__stats')).body,
    ready: async () => void (await get(port, '/__ready')),
    close: async () => {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** GET with a cookie header; the JSON body and the cookie the response set (name=value), if any. */
export function get(
  port: number,
  path: string,
  cookie?: string,
): Promise<{ status: number; body: any; setCookie?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, path, agent: false, headers: cookie ? { cookie } : {} },
      (res) => {
        let text = '';
        res.on('data', (c) => (text += c));
        res.on('end', () => {
          const set = res.headers['set-cookie']?.[0];
          let body: any = text;
          try {
            body = JSON.parse(text);
          } catch {
            /* text */
          }
          resolve({ status: res.statusCode!, body, setCookie: set ? set.split(';')[0] : undefined });
        });
      },
    );
    // A hang fails with its own message, not as the test's timeout.
    req.setTimeout(10_000, () => req.destroy(new Error(`GET ${path} on port ${port}: no answer in 10 s`)));
    req.on('error', reject);
    req.end();
  });
}
