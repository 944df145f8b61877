// Pluggable logger. Default: silent unless DEBUG names express-msm (debug-style), so a library never spams stderr.
export interface Logger {
  debug(msg: string, ...args: unknown[]): void;
  info(msg: string, ...args: unknown[]): void;
  warn(msg: string, ...args: unknown[]): void;
  error(msg: string, ...args: unknown[]): void;
}

function enabledByDebugEnv(): boolean {
  const d = process.env.DEBUG || '';
  return d.split(/[\s,]+/).some((p) => p === '*' || p === 'express-msm' || p === 'express-msm:*');
}

export function defaultLogger(): Logger {
  const on = enabledByDebugEnv();
  const write =
    (level: string) =>
    (msg: string, ...args: unknown[]) => {
      if (on) console.error(`express-msm ${level} ${msg}`, ...args);
    };
  return { debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}

/** Session ids are credentials: log a short hash, never the id itself. */
export function hashId(id: string): string {
  return require('crypto').createHash('sha256').update(id).digest('hex').slice(0, 12);
}
