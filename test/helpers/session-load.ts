// Load for node-list changes: one loop per session (its requests in sequence, alternating app instances), all
// sessions at once, each checking that every increment lands on the previous acknowledged value.
import request from 'supertest';
import type { Express } from 'express';
import { cookieFor, idFromSetCookie } from './app';
import { waitFor } from './wait';

export interface LoadedSession {
  id: string;
  acked: number;
}

export class SessionLoad {
  readonly failures: string[] = [];
  private stopping = false;
  private readonly running: Promise<unknown>;

  constructor(
    apps: Express[],
    readonly sessions: LoadedSession[],
  ) {
    this.running = Promise.all(
      sessions.map(async (s, i) => {
        for (let k = 0; !this.stopping; k++) {
          const r = await request(apps[(i + k) % apps.length])
            .get('/inc')
            .set('Cookie', cookieFor(s.id));
          if (r.status !== 200) {
            this.failures.push(`${r.status} ${r.text}`);
            continue;
          }
          if (r.body.n !== s.acked + 1) this.failures.push(`session ${s.id}: n ${r.body.n}, expected ${s.acked + 1}`);
          s.acked = r.body.n;
          s.id = idFromSetCookie(r.headers) ?? s.id;
        }
      }),
    );
  }

  /** Creates `n` sessions through the first app (counter 1 each). */
  static async create(apps: Express[], n: number): Promise<LoadedSession[]> {
    const out: LoadedSession[] = [];
    for (let i = 0; i < n; i++) {
      const r = await request(apps[0]).get('/inc').expect(200);
      out.push({ id: idFromSetCookie(r.headers)!, acked: 1 });
    }
    return out;
  }

  /** Waits until every session has had about `rounds` more acknowledged increments. */
  async progress(what: string, rounds = 2): Promise<void> {
    const total = () => this.sessions.reduce((n, s) => n + s.acked, 0);
    const from = total();
    await waitFor(() => total() >= from + this.sessions.length * rounds, { timeout: 30_000, what });
  }

  async stop(): Promise<void> {
    this.stopping = true;
    await this.running;
  }

  /** Every session, read through `app`, holds exactly its acknowledged count. */
  async verify(app: Express): Promise<string[]> {
    const wrong: string[] = [];
    for (const s of this.sessions) {
      const r = await request(app).get('/get').set('Cookie', cookieFor(s.id));
      if (r.status !== 200 || r.body.n !== s.acked)
        wrong.push(`session ${s.id}: ${r.status} n ${r.body?.n}, acknowledged ${s.acked}`);
      s.id = idFromSetCookie(r.headers) ?? s.id;
    }
    return wrong;
  }
}
