// The user docs as the doc checks read them: README.md and docs/*.md, their fenced blocks, their prose.
import * as fs from 'fs';
import * as path from 'path';

export const root = path.resolve(__dirname, '../..');

/** README.md and every docs/*.md, as repository-relative paths. */
export function docFiles(): string[] {
  const docs = fs
    .readdirSync(path.join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`);
  return ['README.md', ...docs.sort()];
}

export interface Block {
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  lang: string;
  code: string;
  /** The marker comment on the line before the fence: `<!-- snippet: not compiled -->` or `... continues -->`. */
  marker: 'not compiled' | 'continues' | undefined;
}

/** Fenced code blocks of a Markdown file. */
export function blocks(file: string): Block[] {
  const lines = fs.readFileSync(path.join(root, file), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    if (end < 0) throw new Error(`${file}:${i + 1}: unclosed code block`);
    const m = /^<!-- snippet: (not compiled|continues)\b.*-->$/.exec(lines[i - 1] ?? '');
    out.push({
      file,
      line: i + 1,
      lang: open[1],
      code: lines.slice(i + 1, end).join('\n'),
      marker: m?.[1] as Block['marker'],
    });
    i = end;
  }
  return out;
}

/**
 * The TypeScript snippets to compile, one module each: a ```ts block, with the blocks marked `continues` that follow
 * it appended. Blocks marked `not compiled` are left out.
 */
export function tsSnippets(file: string): Array<{ name: string; line: number; code: string }> {
  const out: Array<{ name: string; line: number; code: string }> = [];
  for (const b of blocks(file)) {
    if (b.lang !== 'ts' || b.marker === 'not compiled') continue;
    if (b.marker === 'continues' && out.length) out[out.length - 1].code += `\n${b.code}`;
    else out.push({ name: `${file.replace(/[^A-Za-z0-9]+/g, '_')}_${b.line}`, line: b.line, code: b.code });
  }
  return out;
}

/** Words of prose: fenced code blocks and the generated options table left out. */
export function proseWords(file: string): number {
  let text = fs.readFileSync(path.join(root, file), 'utf8');
  text = text.replace(/^```[\s\S]*?^```$/gm, '');
  text = text.replace(/<!-- options-table[\s\S]*?<!-- \/options-table -->/, '');
  return text.split(/\s+/).filter((w) => /[A-Za-z0-9]/.test(w)).length;
}
