// README's options table, from the options table in lib/express/options.ts. `npm run options-table` rewrites it
// between the two markers; test/unit/options-table.test.ts fails while README.md differs from what this renders.
import * as fs from 'fs';
import * as path from 'path';
import { OPTIONS, type OptionSpec } from '../lib/express/options';

export const START =
  '<!-- options-table: generated from lib/express/options.ts by `npm run options-table`; edit there -->';
export const END = '<!-- /options-table -->';
const MIB = 1024 * 1024;

function defaultCell(spec: OptionSpec): string {
  if (spec.defaultText) return spec.defaultText;
  if (spec.default === undefined) return 'none';
  const n = spec.default;
  if (spec.unit === 'bytes' && typeof n === 'number' && n % MIB === 0) return `${n / MIB} MiB`;
  const unit = spec.unit === 's' || spec.unit === 'ms' ? ` ${spec.unit}` : '';
  return `\`${String(spec.default)}\`${unit}`;
}

/** The Markdown table: one row an option, in the table's order. */
export function renderOptionsTable(): string {
  const rows = (Object.entries(OPTIONS) as Array<[string, OptionSpec]>).map(([name, spec]) => {
    const option = `\`${name}\`${spec.scope === 'middleware' ? ' (middleware)' : ''}`;
    return `| ${spec.msm ?? '—'} | ${option} | ${defaultCell(spec)} | ${spec.description} |`;
  });
  const head = ['| msm attribute (`context.xml`) | express-msm option | default | notes |', '|---|---|---|---|'];
  return [...head, ...rows].join('\n');
}

/** `readme` with the text between the markers replaced by the rendered table. */
export function withOptionsTable(readme: string): string {
  const start = readme.indexOf(START);
  const end = readme.indexOf(END);
  if (start < 0 || end < start) throw new Error(`README.md needs the markers ${START} and ${END}`);
  return `${readme.slice(0, start + START.length)}\n${renderOptionsTable()}\n${readme.slice(end)}`;
}

if (require.main === module) {
  const file = path.join(__dirname, '..', 'README.md');
  const before = fs.readFileSync(file, 'utf8');
  const after = withOptionsTable(before);
  if (after !== before) fs.writeFileSync(file, after);
  console.log(after === before ? 'README.md: options table up to date' : 'README.md: options table rewritten');
}
