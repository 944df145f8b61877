// The user docs (README.md, docs/*.md) as a new user meets them: short, no development diary, every command they
// show names a script or file that exists, and `npm run docs` builds the API reference. Their TypeScript snippets
// are compiled against the packed package in package.test.ts.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { blocks, docFiles, proseWords, root } from '../helpers/docs';

const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));

describe('README and docs/', () => {
  it('README has at most 1,500 words of prose (code blocks and the generated options table aside)', () => {
    expect(proseWords('README.md')).toBeLessThanOrEqual(1500);
  });

  it('docs/benchmark.md is at most 200 lines', () => {
    expect(fs.readFileSync(path.join(root, 'docs/benchmark.md'), 'utf8').split('\n').length).toBeLessThanOrEqual(200);
  });

  it.each(docFiles())('%s has no issue numbers, run labels or development diary', (file) => {
    const text = fs.readFileSync(path.join(root, file), 'utf8');
    const found = [
      /\bissues? \d+/i,
      /(?<![\w/&])#\d+\b/,
      /\bP\d+\b/,
      /\bseeds?'?\b/i,
      /\b(previous|earlier|this|last) stop\b/i,
      /\bround \d+ of\b/i,
      /\ban hour (earlier|before)\b/i,
    ].flatMap((re) => text.split('\n').flatMap((line, i) => (re.test(line) ? [`${file}:${i + 1}: ${line}`] : [])));
    expect(found).toEqual([]);
  });

  it('every shell command names an npm script, a file or a known tool that exists', () => {
    const problems: string[] = [];
    for (const file of docFiles()) {
      for (const b of blocks(file)) {
        if (!['sh', 'bash', 'shell'].includes(b.lang) || b.marker === 'not compiled') continue;
        b.code.split('\n').forEach((line, i) => {
          for (const cmd of commandsOf(line)) {
            const problem = checkCommand(cmd);
            if (problem) problems.push(`${file}:${b.line + 1 + i}: ${cmd}: ${problem}`);
          }
        });
      }
      // Commands quoted in prose: `npm run x`, `node -r ./scripts/register.js file`, `bash file`.
      const text = fs.readFileSync(path.join(root, file), 'utf8').replace(/^```[\s\S]*?^```$/gm, '');
      for (const m of text.matchAll(/`((?:[A-Z_]+=\S+ )*(?:npm run|npm test|node -r|bash) [^`]*)`/g)) {
        const problem = checkCommand(m[1].replace(/^(?:[A-Z_]+=\S+ )+/, ''));
        if (problem) problems.push(`${file}: \`${m[1]}\`: ${problem}`);
      }
    }
    expect(problems).toEqual([]);
  });

  it('`npm run docs` builds the API reference with no warning (every public export and option documented)', () => {
    const out = fs.mkdtempSync(path.join(require('os').tmpdir(), 'msm-api-'));
    try {
      execFileSync('npm', ['run', 'docs', '--', '--out', out], { cwd: root, encoding: 'utf8', stdio: 'pipe' });
      expect(fs.existsSync(path.join(out, 'index.html'))).toBe(true);
      expect(fs.existsSync(path.join(out, 'classes/MemcachedStore.html'))).toBe(true);
    } finally {
      fs.rmSync(out, { recursive: true, force: true });
    }
    // The default output folder is not committed.
    expect(fs.readFileSync(path.join(root, '.gitignore'), 'utf8')).toMatch(/^api-docs$/m);
  }, 120_000);
});

/** The commands of one shell line: comment dropped, split at `&&`, `||`, `;` and `|`, leading VAR=x removed. */
function commandsOf(line: string): string[] {
  const code = line.replace(/(^|\s)#.*$/, '').trim();
  if (!code) return [];
  return code
    .split(/&&|\|\||;|\|/)
    .map((c) => c.trim().replace(/^(?:[A-Z0-9_]+=("[^"]*"|\S+)\s+)+/, ''))
    .filter(Boolean);
}

const TOOLS = new Set(['kill', 'curl', 'sudo', 'apt-get', 'git', 'mkdir', 'tar', 'cd', 'openssl', 'memcached']);

/** Why `cmd` would not run as written on a fresh clone, or undefined. */
function checkCommand(cmd: string): string | undefined {
  const words = cmd.split(/\s+/);
  const exists = (f: string) => fs.existsSync(path.join(root, f));
  if (words[0] === 'npm') {
    if (words[1] === 'test') return pkg.scripts.test ? undefined : 'no test script';
    if (words[1] === 'run') return pkg.scripts[words[2]] ? undefined : `no npm script ${words[2]}`;
    if (['install', 'ci', 'pack'].includes(words[1])) return undefined;
    return `npm ${words[1]}?`;
  }
  if (words[0] === 'node') {
    const file = words.slice(1).find((w, i, all) => !w.startsWith('-') && all[i - 1] !== '-r');
    const required = words.filter((_, i) => words[i - 1] === '-r');
    const missing = [...required, ...(file ? [file] : [])].filter((f) => /\.(ts|js)$/.test(f) && !exists(f));
    return missing.length ? `missing ${missing.join(', ')}` : undefined;
  }
  if (words[0] === 'bash') return exists(words[1]) ? undefined : `missing ${words[1]}`;
  if (words[0] === 'docker') return exists('docker-compose.yml') ? undefined : 'no docker-compose.yml';
  if (words[0] === 'npx') return exists(`node_modules/.bin/${words[1]}`) ? undefined : `no ${words[1]} installed`;
  return TOOLS.has(words[0]) ? undefined : `unknown command ${words[0]}`;
}
