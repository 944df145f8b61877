// Every error express-msm throws or returns, in one place. `status` is set where an HTTP answer follows from it
// (express's and connect's final handlers answer with `status` and show the message when `expose`); `cause` holds
// the underlying error where there is one.

/** `{ cause }` only when there is one: `new Error(m, { cause: undefined })` would still add a `cause` property. */
function causeOf(options?: ErrorOptions): ErrorOptions | undefined {
  return options && 'cause' in options ? { cause: options.cause } : undefined;
}

/**
 * A setup mistake the application must fix: a bad option, named with its value (secrets redacted by the caller) and
 * what was expected; an unknown option name; a transcoder's bad options; a missing peer dependency.
 */
export class ConfigError extends Error {
  constructor(option: string, value: unknown, why: string, options?: ErrorOptions & { message?: string }) {
    super(options?.message ?? `express-msm: invalid ${option} ${JSON.stringify(value)}: ${why}`, causeOf(options));
    this.name = 'ConfigError';
  }

  /** An option name that is not one (a typo, or a memcachedSession() option given to the store). */
  static unknownOption(name: string, why: string): ConfigError {
    return ConfigError.saying(`express-msm: unknown option "${name}": ${why}`);
  }

  /** A setup mistake told in its own words, where "invalid <option> <value>" does not fit. */
  static saying(message: string, options?: ErrorOptions): ConfigError {
    return new ConfigError('', undefined, '', { ...options, message });
  }
}

/**
 * An operation on a store after store.close(). No status: a request reaching a closed store is the application's
 * ordering mistake (close the server first), not a condition a client's retry could clear.
 */
export class StoreClosedError extends Error {
  constructor(message = 'express-msm: the store is closed (store.close() was called)') {
    super(message);
    this.name = 'StoreClosedError';
  }
}

/**
 * A session whose encoded bytes exceed what may be stored (the store's limit, or the memcached node's item size).
 * No status: HTTP's 413 says the request body is too large, which the client could fix by sending less; here the
 * application put too much into the session, so the honest answer is the server error express gives by default.
 */
export class SessionTooLargeError extends Error {
  /** The encoded session's size. */
  readonly bytes: number;

  constructor(message: string, bytes: number, options?: ErrorOptions) {
    super(message, causeOf(options));
    this.name = 'SessionTooLargeError';
    this.bytes = bytes;
  }
}

/**
 * memcached cannot serve the operation: the nodes it needs are down or did not answer, or none is known yet. 503,
 * and the message is not shown to clients (it names nodes and addresses).
 */
export class StorageUnavailableError extends Error {
  /** HTTP status Express's final handler answers with. */
  readonly status = 503;
  /** The same, under the name some frameworks read. */
  readonly statusCode = 503;
  /** The message (it names nodes) is not shown to clients. */
  readonly expose = false;

  constructor(message: string, options?: ErrorOptions) {
    super(message, causeOf(options));
    this.name = 'StorageUnavailableError';
  }
}

/**
 * The session lock was not acquired in time and `lockTimeoutAction` is `reject`. 503 (the middleware adds
 * `Retry-After`); the message says nothing internal, so it may be shown.
 */
export class LockTimeoutError extends Error {
  /** HTTP status Express's final handler answers with. */
  readonly status = 503;
  /** The same, under the name some frameworks read. */
  readonly statusCode = 503;
  /** The message may be shown to the client. */
  readonly expose = true;

  constructor(message = 'Session is locked by another request') {
    super(message);
    this.name = 'LockTimeoutError';
  }
}

/**
 * A transcoder cannot encode this session: an attribute its format has no place for (an Avro schema), or a call
 * without the context it needs. No status: the session's content is the application's, a client cannot change it.
 */
export class TranscoderError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, causeOf(options));
    this.name = 'TranscoderError';
  }
}
