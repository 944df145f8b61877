import {
  AvroTranscoder,
  ConfigError,
  EncryptingTranscoder,
  LockTimeoutError,
  SessionTooLargeError,
  StorageUnavailableError,
  StoreClosedError,
  TranscoderError,
} from '../../lib';
import { thrown } from '../helpers/thrown';

describe('typed errors', () => {
  const cause = new Error('ECONNREFUSED 127.0.0.1:11211');

  it.each([
    ['ConfigError', new ConfigError('sticky', 'yes', 'expected true or false')],
    ['StoreClosedError', new StoreClosedError()],
    ['SessionTooLargeError', new SessionTooLargeError('express-msm: session is 2 bytes', 2)],
    ['StorageUnavailableError', new StorageUnavailableError('express-msm: cannot list sessions')],
    ['LockTimeoutError', new LockTimeoutError()],
    ['TranscoderError', new TranscoderError('express-msm: session does not fit')],
  ])('%s is an Error named after its class, with a stack that names it', (name, e) => {
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe(name);
    expect(String(e)).toBe(`${name}: ${e.message}`);
    expect(e.stack).toMatch(new RegExp(`^${name}: `));
    expect(e.stack).toContain(__filename);
  });

  it('ConfigError keeps its message form, and says a setup mistake in its own words', () => {
    expect(new ConfigError('operationTimeout', -1, 'expected a number >= 1').message).toBe(
      'express-msm: invalid operationTimeout -1: expected a number >= 1',
    );
    expect(ConfigError.unknownOption('hosts', 'did you mean x?').message).toBe(
      'express-msm: unknown option "hosts": did you mean x?',
    );
    const e = ConfigError.saying('express-msm: registerMetrics needs prom-client', { cause });
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toBe('express-msm: registerMetrics needs prom-client');
    expect(e.stack).toMatch(/^ConfigError: express-msm: registerMetrics needs prom-client\n/);
    expect(e.cause).toBe(cause);
  });

  it("HTTP applies to storage unavailable and lock timeout: 503; only the lock timeout's message may be shown", () => {
    const unavailable = new StorageUnavailableError('express-msm: cannot store session: node n1 is down', { cause });
    expect(unavailable).toMatchObject({ status: 503, statusCode: 503, expose: false, cause });
    const locked = new LockTimeoutError();
    expect(locked).toMatchObject({
      status: 503,
      statusCode: 503,
      expose: true,
      message: 'Session is locked by another request',
    });
  });

  it('no status where HTTP does not apply (express answers 500)', () => {
    for (const e of [
      new ConfigError('a', 1, 'b'),
      new StoreClosedError(),
      new SessionTooLargeError('m', 5),
      new TranscoderError('m'),
    ]) {
      expect(e).not.toHaveProperty('status');
      expect(e).not.toHaveProperty('statusCode');
    }
  });

  it('carries cause only where there is an underlying error', () => {
    expect(new TranscoderError('m', { cause }).cause).toBe(cause);
    expect(new SessionTooLargeError('m', 1, { cause }).cause).toBe(cause);
    for (const e of [
      new StorageUnavailableError('m'),
      new TranscoderError('m'),
      new ConfigError('a', 1, 'b'),
      ConfigError.saying('m'),
    ]) {
      expect('cause' in e).toBe(false);
    }
  });

  it("SessionTooLargeError tells the size; StoreClosedError keeps the store's message", () => {
    expect(new SessionTooLargeError('m', 1_048_577).bytes).toBe(1_048_577);
    expect(new StoreClosedError().message).toBe('express-msm: the store is closed (store.close() was called)');
    expect(new StoreClosedError('express-msm: setMemcachedNodes on a closed store').message).toBe(
      'express-msm: setMemcachedNodes on a closed store',
    );
  });
});

describe("the transcoders' errors are typed, their messages unchanged", () => {
  it('their own options: ConfigError', () => {
    const noKeys = thrown(() => new EncryptingTranscoder({ keys: [] }));
    expect(noKeys).toBeInstanceOf(ConfigError);
    expect(noKeys.message).toBe(
      'express-msm: EncryptingTranscoder needs keys: [{ id, key }] (at least one; the first one writes)',
    );
    const badSchema = thrown(() => new AvroTranscoder({ schema: { type: 'nope' } as any }));
    expect(badSchema).toBeInstanceOf(ConfigError);
    expect(badSchema.message).toMatch(/^express-msm: AvroTranscoder schema is not a valid Avro schema: /);
    expect(badSchema.cause).toBeInstanceOf(Error);
  });

  it("a session they cannot encode: TranscoderError, with the encoder's error as cause where there is one", () => {
    const t = new AvroTranscoder({ schema: { type: 'record', name: 'S', fields: [{ name: 'n', type: 'long' }] } });
    const undeclared = thrown(() => t.encode({ cookie: { originalMaxAge: null }, n: 1, extra: true }));
    expect(undeclared).toBeInstanceOf(TranscoderError);
    expect(undeclared.message).toBe(
      'express-msm: session attribute "extra" is not in the Avro schema S; add it to the schema or exclude it with sessionAttributeFilter',
    );
    const misfit = thrown(() => t.encode({ cookie: { originalMaxAge: null }, n: 'one' }));
    expect(misfit).toBeInstanceOf(TranscoderError);
    expect(misfit.message).toMatch(
      /^express-msm: session attribute "n" does not fit the Avro schema S: expected "long", got "one"$/,
    );
    expect(misfit.cause).toBeInstanceOf(Error);
    const key = { id: 'k1', key: Buffer.alloc(32, 1) };
    expect(
      thrown(() => new EncryptingTranscoder({ keys: [key] }).encode({ cookie: { originalMaxAge: null } })),
    ).toBeInstanceOf(TranscoderError);
  });
});
