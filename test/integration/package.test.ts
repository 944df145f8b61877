// The published shape: `npm run build` output is what `require('express-msm')` and `import ... from 'express-msm'` load.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

const root = path.resolve(__dirname, '../..');

beforeAll(() => {
  // CI builds first; a bare `npm test` on a fresh checkout (or after editing lib/) builds here.
  const built = path.join(root, 'dist/index.js');
  const newest = (dir: string): number => Math.max(0, ...fs.readdirSync(dir, { withFileTypes: true }).map((d) =>
    d.isDirectory() ? newest(path.join(dir, d.name)) : fs.statSync(path.join(dir, d.name)).mtimeMs));
  if (!fs.existsSync(built) || fs.statSync(built).mtimeMs < newest(path.join(root, 'lib'))) {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' });
  }
}, 120_000);

function node(args: string[]): string {
  return execFileSync(process.execPath, args, { cwd: root, encoding: 'utf8' }).trim();
}

describe('package entry points', () => {
  it('points main, types and exports at dist/', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    expect(pkg.main).toBe('dist/index.js');
    expect(pkg.types).toBe('dist/index.d.ts');
    expect(pkg.exports['.'].require).toBe('./dist/index.js');
    expect(pkg.peerDependencies['express-session']).toBeDefined();
    expect(Object.keys(pkg.dependencies).sort()).toEqual(expect.arrayContaining(['avsc', 'lru-cache', 'memjs']));
    expect(fs.existsSync(path.join(root, 'dist/index.d.ts'))).toBe(true);
  });

  it('loads with require and with import, by package name', () => {
    const names = 'MemcachedStore memcachedSession JsonTranscoder AvroTranscoder';
    const cjs = node(['-e', `const m = require('express-msm'); console.log('${names}'.split(' ').map((n) => typeof m[n]).join(','))`]);
    expect(cjs).toBe('function,function,function,function');
    const esm = node(['--input-type=module', '-e',
      `import { MemcachedStore, memcachedSession } from 'express-msm'; const s = new MemcachedStore({ memcachedNodes: 'n1:127.0.0.1:1' }); console.log(typeof s.genid(), typeof memcachedSession); await s.close();`]);
    expect(esm).toBe('string function');
  });
});
