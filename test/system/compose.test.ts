// No Docker engine runs here, so docker-compose.yml is checked against the app instead of started: the services of
// the seeds' topology (nginx, app_a, app_b, n1, n2), the environment names the app reads, MEMCACHED_NODES naming
// the memcached services, nginx's upstreams naming the app services and their ports, and the Dockerfile's command.
import * as fs from 'fs';
import * as path from 'path';
import { parseMemcachedNodes } from '../../lib';
import { COMPOSE_UPSTREAMS, NON_PAGE_PATH, composeNginxConfig } from '../../demo-app/balancer';
import { ENV_NAMES, IGNORE_PATTERN, REQUIRED_ENV, readConfig } from '../../demo-app/config';

const ROOT = path.resolve(__dirname, '..', '..');
const read = (p: string) => fs.readFileSync(path.join(ROOT, p), 'utf8');

// --- a YAML subset: block maps, block lists, flow lists, scalars (plain, quoted), comments ---------------------------

type Yaml = string | Yaml[] | { [k: string]: Yaml } | null;

function stripComment(line: string): string {
  let q: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i];
    if (q) {
      if (c === q) q = null;
    } else if (c === '"' || c === "'") q = c;
    else if (c === '#' && (i === 0 || /\s/.test(line[i - 1]))) return line.slice(0, i);
  }
  return line;
}

function scalar(raw: string): Yaml {
  const s = raw.trim();
  if (s === '' || s === '~' || s === 'null') return null;
  if ((s.startsWith('"') && s.endsWith('"')) || (s.startsWith("'") && s.endsWith("'"))) return s.slice(1, -1);
  if (s.startsWith('[') && s.endsWith(']')) {
    const inner = s.slice(1, -1).trim();
    if (!inner) return [];
    const out: Yaml[] = [];
    let cur = '';
    let q: string | null = null;
    for (const c of inner) {
      if (q) {
        cur += c;
        if (c === q) q = null;
        continue;
      }
      if (c === '"' || c === "'") {
        q = c;
        cur += c;
        continue;
      }
      if (c === ',') {
        out.push(scalar(cur));
        cur = '';
        continue;
      }
      cur += c;
    }
    out.push(scalar(cur));
    return out;
  }
  return s;
}

function parseYaml(text: string): Yaml {
  const lines = text
    .split(/\r?\n/)
    .map(stripComment)
    .map((l) => l.replace(/\s+$/, ''))
    .filter((l) => l.trim() !== '');
  let i = 0;
  const indentOf = (l: string) => l.length - l.trimStart().length;

  function block(indent: number): Yaml {
    if (i >= lines.length) return null;
    if (lines[i].trimStart().startsWith('- ') || lines[i].trim() === '-') return list(indentOf(lines[i]));
    return map(indent);
  }
  function list(indent: number): Yaml[] {
    const out: Yaml[] = [];
    while (i < lines.length && indentOf(lines[i]) === indent && lines[i].trimStart().startsWith('-')) {
      const rest = lines[i].trimStart().slice(1).trim();
      i++;
      if (rest === '') out.push(block(indent + 2));
      else if (/^[A-Za-z0-9_.-]+:(\s|$)/.test(rest)) throw new Error(`maps inside lists are not supported: ${rest}`);
      else out.push(scalar(rest));
    }
    return out;
  }
  function map(indent: number): { [k: string]: Yaml } {
    const out: { [k: string]: Yaml } = {};
    while (i < lines.length && indentOf(lines[i]) === indent) {
      const line = lines[i].trim();
      const m = /^("[^"]*"|'[^']*'|[^:\s][^:]*?):(?:\s+(.*))?$/.exec(line);
      if (!m) throw new Error(`cannot parse YAML line ${JSON.stringify(lines[i])}`);
      const key = scalar(m[1]) as string;
      i++;
      if (m[2] !== undefined && m[2] !== '') out[key] = scalar(m[2]);
      else if (i < lines.length && indentOf(lines[i]) > indent) out[key] = block(indentOf(lines[i]));
      else if (i < lines.length && indentOf(lines[i]) === indent && lines[i].trimStart().startsWith('- '))
        out[key] = list(indent);
      else out[key] = null;
    }
    return out;
  }
  const root = block(0);
  if (i < lines.length) throw new Error(`unexpected indentation at ${JSON.stringify(lines[i])}`);
  return root;
}

/** Compose's `${VAR:-default}` interpolation with an empty environment. */
function interpolate(v: string): string {
  return v.replace(/\$\{([A-Z_][A-Z0-9_]*)(?::?-([^}]*))?\}/g, (_, _name, dflt) => dflt ?? '');
}

type Service = {
  image?: string;
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string>;
  ports?: string[];
  volumes?: string[];
  depends_on?: string[];
  command?: string[];
};

describe('docker-compose.yml', () => {
  const compose = parseYaml(read('docker-compose.yml')) as { services: Record<string, Service> };
  const services = compose.services;
  const apps = ['app_a', 'app_b'];
  const envOf = (name: string): Record<string, string> =>
    Object.fromEntries(Object.entries(services[name].environment ?? {}).map(([k, v]) => [k, interpolate(String(v))]));

  test('the YAML reader handles what the file uses', () => {
    expect(parseYaml('a:\n  b: "x: y" # c\n  l:\n    - 1\n    - \'2\'\n  f: [x, "y z"]\nn:\n')).toEqual({
      a: { b: 'x: y', l: ['1', '2'], f: ['x', 'y z'] },
      n: null,
    });
  });

  test("the seeds' topology: nginx, app_a, app_b, memcached n1 and n2", () => {
    expect(Object.keys(services).sort()).toEqual(['app_a', 'app_b', 'n1', 'n2', 'nginx']);
    expect(services.nginx.image).toMatch(/^nginx(:|$)/);
    for (const n of ['n1', 'n2']) expect(services[n].image).toMatch(/^memcached:1\.6/);
    expect([...(services.nginx.depends_on ?? [])].sort()).toEqual(apps);
    for (const a of apps) expect([...(services[a].depends_on ?? [])].sort()).toEqual(['n1', 'n2']);
  });

  test('the app services set only environment names the app reads, and all it needs', () => {
    // What demo-app/config.ts reads is exactly ENV_NAMES.
    const src = read('demo-app/config.ts');
    const readNames = new Set([...src.matchAll(/\benv\.([A-Z_][A-Z0-9_]*)/g)].map((m) => m[1]));
    expect([...readNames].sort()).toEqual([...ENV_NAMES].sort());
    for (const a of apps) {
      const env = envOf(a);
      for (const k of Object.keys(env)) expect(ENV_NAMES).toContain(k);
      for (const k of REQUIRED_ENV) expect(env[k]).toBeTruthy();
      expect(env.HOST).toBe('0.0.0.0');
    }
    const [a, b] = apps.map(envOf);
    expect([a.INSTANCE_NAME, b.INSTANCE_NAME]).toEqual(['a', 'b']);
    expect(a.SESSION_SECRET).toBe(b.SESSION_SECRET);
    expect(a.MEMCACHED_NODES).toBe(b.MEMCACHED_NODES);
    expect(a.STICKY).toBe(b.STICKY);
    // The app accepts each service's configuration, in both modes.
    for (const env of [a, b]) {
      for (const sticky of ['false', 'true']) {
        const cfg = readConfig({ ...env, STICKY: sticky });
        expect(cfg.port).toBe(Number(env.PORT));
        expect(cfg.sticky).toBe(sticky === 'true');
        if (sticky === 'true') expect(cfg.route).toBe(env.INSTANCE_NAME);
      }
    }
  });

  test('the local demo passes the same environment names to its instances', () => {
    const src = read('demo-app/run-local.ts');
    const block = /const env: NodeJS\.ProcessEnv = \{([\s\S]*?)\};/.exec(src)![1];
    const names = [...block.matchAll(/^\s*([A-Z_][A-Z0-9_]*)\s*[:,]/gm)].map((m) => m[1]);
    expect(names.sort()).toEqual(Object.keys(envOf('app_a')).sort());
  });

  test('MEMCACHED_NODES names the memcached services and the port they listen on', () => {
    const { nodes } = parseMemcachedNodes(envOf('app_a').MEMCACHED_NODES);
    expect(nodes.map((n) => n.id)).toEqual(['n1', 'n2']);
    for (const n of nodes) {
      expect(services[n.host]).toBeDefined();
      const cmd = services[n.host].command ?? [];
      const p = cmd.indexOf('-p');
      expect(n.port).toBe(p >= 0 ? Number(cmd[p + 1]) : 11211);
    }
  });

  test("nginx: its config is mounted, generated, and its upstreams are the app services' ports", () => {
    const vol = (services.nginx.volumes ?? []).map(String).find((v) => v.includes(':/etc/nginx/nginx.conf'));
    expect(vol).toBeDefined();
    const file = vol!.split(':')[0];
    const conf = read(file);
    // Generated by demo-app/balancer.ts, so the local demo's nginx and this one route alike.
    expect(conf).toBe(composeNginxConfig());
    const upstreamServers = [...conf.matchAll(/^\s*server\s+([^\s:;]+):(\d+)/gm)].map((m) => `${m[1]}:${m[2]}`);
    expect(new Set(upstreamServers)).toEqual(new Set(apps.map((a) => `${a}:${envOf(a).PORT}`)));
    for (const u of COMPOSE_UPSTREAMS) expect(envOf(u.host).INSTANCE_NAME).toBe(u.route);
    // Published on loopback only, to the port nginx listens on.
    const listen = /^\s*listen\s+(\d+);/m.exec(conf)![1];
    expect(services.nginx.ports).toEqual([`127.0.0.1:8080:${listen}`]);
  });

  test('nginx: pages and non-pages (static files, health checks) take turns in upstreams of their own, over the same servers', () => {
    const conf = read('demo-app/nginx.conf');
    const upstreams = Object.fromEntries(
      [...conf.matchAll(/^\s*upstream (\S+) \{([^}]*)\}/gm)].map((m) => [
        m[1],
        [...m[2].matchAll(/server\s+(\S+)/g)].map((x) => x[1]).join(' '),
      ]),
    );
    expect(upstreams.msm_rr_nonpage).toBe(upstreams.msm_rr);
    expect(upstreams.msm_rr).toBe(apps.map((a) => `${a}:${envOf(a).PORT}`).join(' '));
    const locations = [...conf.matchAll(/^\s*location (.+?) \{\s*proxy_pass http:\/\/(\S+);/gm)].map((m) => [
      m[1],
      m[2],
    ]);
    expect(locations).toEqual([
      [`~ ${NON_PAGE_PATH}`, 'msm_rr_nonpage'],
      ['/', '$msm_upstream'],
    ]);
    // The app's requestUriIgnorePattern is what nginx counts as a non-page.
    expect(NON_PAGE_PATH.startsWith(`${IGNORE_PATTERN}|`)).toBe(true);
    // Pages without a route go round robin; with one, to that route's upstream.
    expect(conf).toMatch(/map \$msm_route \$msm_upstream \{\s*default msm_rr;\s*a msm_route_a;\s*b msm_route_b;/);
  });

  test('the Dockerfile builds from the repository root and its command exists', () => {
    for (const a of apps) {
      expect(services[a].build).toEqual({ context: '.', dockerfile: 'demo-app/Dockerfile' });
      expect(services[a].image).toBeUndefined();
    }
    const df = read('demo-app/Dockerfile');
    expect(df).toMatch(/^FROM node:20/m);
    for (const m of df.matchAll(/^COPY\s+(.+)$/gm)) {
      const parts = m[1].trim().split(/\s+/);
      for (const src of parts.slice(0, -1)) expect(fs.existsSync(path.join(ROOT, src))).toBe(true);
    }
    const cmd = JSON.parse(/^CMD\s+(\[.*\])\s*$/m.exec(df)![1]) as string[];
    expect(cmd[0]).toBe('node');
    for (const arg of cmd.slice(1).filter((x) => !x.startsWith('-')))
      expect(fs.existsSync(path.join(ROOT, arg))).toBe(true);
    expect(df).toMatch(new RegExp(`^EXPOSE ${envOf('app_a').PORT}$`, 'm'));
    // Dev dependencies (express, express-session, typescript) are installed: NODE_ENV=production only after npm ci.
    expect(df.indexOf('npm ci')).toBeLessThan(df.indexOf('NODE_ENV=production'));
    expect(df).not.toMatch(/--omit=dev|--production/);
    // The lockfile is the install, as in CI: no `npm install` that would resolve other versions.
    expect(df).not.toMatch(/npm (install|i)\b/);
  });
});
