// TLS test material made with openssl in a temp dir: a CA, a server certificate for 127.0.0.1/localhost signed by
// it, a client certificate (mutual TLS), and a second, unrelated CA with its own server certificate.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { MemcachedProcess, freePort } from './memcached';

export interface TestCerts {
  dir: string;
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** Another CA, and a server certificate it signed: a client trusting `ca` must reject it. */
  otherCa: string;
  otherServerCert: string;
  otherServerKey: string;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

function makeCa(dir: string, name: string): void {
  openssl(
    [
      'req',
      '-x509',
      '-newkey',
      'rsa:2048',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=express-msm test ${name}`,
    ],
    dir,
  );
}

function makeSigned(dir: string, ca: string, name: string, ext: string): void {
  openssl(
    ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`],
    dir,
  );
  fs.writeFileSync(path.join(dir, `${name}.ext`), ext + '\n');
  openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${ca}.pem`,
      '-CAkey',
      `${ca}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

export function makeCerts(): TestCerts {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msm-tls-'));
  makeCa(dir, 'ca');
  makeCa(dir, 'otherca');
  makeSigned(dir, 'ca', 'server', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
  makeSigned(dir, 'ca', 'client', 'extendedKeyUsage=clientAuth');
  makeSigned(dir, 'otherca', 'otherserver', 'subjectAltName=IP:127.0.0.1,DNS:localhost');
  const p = (f: string) => path.join(dir, f);
  return {
    dir,
    ca: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    clientCert: p('client.pem'),
    clientKey: p('client.key'),
    otherCa: p('otherca.pem'),
    otherServerCert: p('otherserver.pem'),
    otherServerKey: p('otherserver.key'),
  };
}

/** openssl is on every CI image we use; without it the TLS tests say why they are skipped. */
export function opensslMissing(): string | undefined {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return undefined;
  } catch {
    return 'openssl not found: install the Debian package openssl';
  }
}

export interface TlsMemcachedOptions {
  cert?: string;
  key?: string;
  /** Require a client certificate signed by this CA (memcached ssl_verify_mode=2). */
  clientCa?: string;
  extraArgs?: string[];
  env?: NodeJS.ProcessEnv;
}

/**
 * memcached -Z on `port` (TLS only) plus a plain listener on `plainPort`, so tests read what landed with RawClient.
 */
export async function startTlsMemcached(
  certs: TestCerts,
  o: TlsMemcachedOptions = {},
): Promise<{ mc: MemcachedProcess; plainPort: number }> {
  const plainPort = await freePort();
  const ssl = [`ssl_chain_cert=${o.cert ?? certs.serverCert}`, `ssl_key=${o.key ?? certs.serverKey}`];
  if (o.clientCa) ssl.push('ssl_verify_mode=2', `ssl_ca_cert=${o.clientCa}`);
  const args = ['-Z', '-o', ssl.join(','), '-l', `notls:127.0.0.1:${plainPort}`, ...(o.extraArgs ?? [])];
  const mc = await new MemcachedProcess(await freePort(), args, o.env).start();
  return { mc, plainPort };
}
