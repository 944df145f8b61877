// The load generator when wrk is not installed: autocannon in its own process (bench/run.ts pins it to its own
// core), every request with the next session cookie. Args: one JSON object; prints one JSON line.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const autocannon = require('autocannon');

interface Args {
  url: string;
  method: string;
  connections: number;
  duration: number;
  cookies: string[];
  /** Index of the first cookie (where the previous run on this list stopped). */
  offset?: number;
}

async function main(): Promise<void> {
  const a = JSON.parse(process.argv[2]) as Args;
  let next = a.offset ?? 0;
  const result = await autocannon({
    url: a.url,
    method: a.method,
    connections: a.connections,
    duration: a.duration,
    requests: [
      {
        setupRequest: (req: any) => {
          req.headers = { ...req.headers, cookie: a.cookies[next++ % a.cookies.length] };
          return req;
        },
      },
    ],
  });
  process.stdout.write(
    `AUTOCANNON_RESULT ${JSON.stringify({
      requests: result.requests.total,
      durationUs: Math.round(result.duration * 1e6),
      p50Us: Math.round(result.latency.p50 * 1000),
      p99Us: Math.round(result.latency.p99 * 1000),
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
    })}\n`,
  );
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
