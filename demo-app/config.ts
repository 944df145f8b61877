// The demo app's configuration: environment variables only, with the same names in docker-compose.yml and in the
// local orchestrator (run-local.ts). ENV_NAMES is what test/system/compose.test.ts checks the compose file against.

/** Every environment variable the app reads. */
export const ENV_NAMES = [
  'INSTANCE_NAME',
  'INSTANCE_COLOR',
  'HOST',
  'PORT',
  'MEMCACHED_NODES',
  'MEMCACHED_TLS_CA',
  'FAILOVER_NODES',
  'STICKY',
  'ROUTE',
  'LOCKING_MODE',
  'SESSION_SECRET',
  'SESSION_COOKIE_NAME',
] as const;

/** The ones docker-compose must set for each app service. */
export const REQUIRED_ENV = ['INSTANCE_NAME', 'PORT', 'MEMCACHED_NODES', 'SESSION_SECRET'] as const;

export const IGNORE_PATTERN = '.*\\.(ico|png|gif|jpg|css|js)$';
export const CART_LOCKING_MODE = 'uriPattern:/cart.*';

export interface DemoConfig {
  instanceName: string;
  color: string;
  host: string;
  port: number;
  memcachedNodes: string;
  /** PEM file of the CA that signed the memcached nodes' certificates: set, the app speaks TLS to them. */
  memcachedTlsCa: string | undefined;
  failoverNodes: string | undefined;
  sticky: boolean;
  route: string | undefined;
  lockingMode: string;
  sessionSecret: string;
  cookieName: string;
}

const COLORS: Record<string, string> = { a: '#1f7a8c', b: '#d1495b', c: '#6a4c93', d: '#edae49' };

/** A colour per instance: fixed for a/b (and names ending in a/b), else a hue from the name. */
export function colorFor(name: string): string {
  const key = name.toLowerCase().replace(/^.*[-_ ]/, '');
  if (COLORS[key]) return COLORS[key];
  let h = 0;
  for (const ch of name) h = (h * 31 + ch.charCodeAt(0)) >>> 0;
  return `hsl(${h % 360}, 55%, 40%)`;
}

function truthy(v: string | undefined): boolean {
  return /^(1|true|yes|on)$/i.test((v ?? '').trim());
}

export function readConfig(env: NodeJS.ProcessEnv = process.env): DemoConfig {
  const instanceName = env.INSTANCE_NAME || 'a';
  const sticky = truthy(env.STICKY);
  const port = Number(env.PORT || 3000);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    throw new Error(`PORT must be a port number, got ${env.PORT}`);
  // Tomcat's jvmRoute: only sticky mode puts it into session ids.
  const route = sticky ? env.ROUTE || instanceName.replace(/[^A-Za-z0-9_]/g, '_') : undefined;
  return {
    instanceName,
    color: env.INSTANCE_COLOR || colorFor(instanceName),
    host: env.HOST || '127.0.0.1',
    port,
    memcachedNodes: env.MEMCACHED_NODES || 'n1:127.0.0.1:21211,n2:127.0.0.1:21212',
    memcachedTlsCa: env.MEMCACHED_TLS_CA || undefined,
    failoverNodes: env.FAILOVER_NODES || undefined,
    sticky,
    route,
    // msm allows locking in non-sticky mode only: sticky sessions live in one instance.
    lockingMode: env.LOCKING_MODE || (sticky ? 'none' : CART_LOCKING_MODE),
    sessionSecret: env.SESSION_SECRET || 'express-msm demo secret (set SESSION_SECRET)',
    cookieName: env.SESSION_COOKIE_NAME || 'connect.sid',
  };
}
