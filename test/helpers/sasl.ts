// SASL PLAIN for memcached -S: what the machine lacks (a test is then skipped, naming it), and a sasldb with one user.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';

/** Why SASL tests cannot run here, or undefined. Needs saslpasswd2 (sasl2-bin) and the PLAIN module (libsasl2-modules). */
export function saslMissing(): string | undefined {
  try {
    execFileSync('saslpasswd2', ['-v'], { stdio: 'ignore' });
  } catch (e) {
    if ((e as any).code === 'ENOENT')
      return 'saslpasswd2 not found: install the Debian packages sasl2-bin and libsasl2-modules';
  }
  const plain = [
    '/usr/lib/x86_64-linux-gnu/sasl2',
    '/usr/lib/aarch64-linux-gnu/sasl2',
    '/usr/lib/sasl2',
    '/usr/lib64/sasl2',
  ].some((d) => fs.existsSync(d) && fs.readdirSync(d).some((f) => f.startsWith('libplain')));
  if (!plain) return 'SASL PLAIN module not found: install the Debian package libsasl2-modules';
  return undefined;
}

/** A sasldb in `dir` with `user`, and the memcached.conf memcached -S reads from SASL_CONF_PATH=dir. */
export function writeSaslConf(dir: string, user: string, password: string): void {
  const db = path.join(dir, 'sasldb');
  execFileSync('saslpasswd2', ['-p', '-a', 'memcached', '-c', '-f', db, user], { input: password });
  fs.writeFileSync(path.join(dir, 'memcached.conf'), `mech_list: plain\nsasldb_path: ${db}\n`);
}
