// A Logger that keeps every line, for assertions on what the store logs.
import type { Logger } from '../../lib/core/logger';

export function capturingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const write =
    (level: string) =>
    (msg: string, ...args: unknown[]) => {
      lines.push(
        `${level} ${msg} ${args.map((a) => (a instanceof Error ? `${a.message} ${a.stack}` : typeof a === 'string' ? a : JSON.stringify(a))).join(' ')}`,
      );
    };
  return { lines, debug: write('debug'), info: write('info'), warn: write('warn'), error: write('error') };
}
