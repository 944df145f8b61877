// Every error express-msm throws or returns, in one place. `status` is set where an HTTP answer follows from it.

/** A bad option, named with its value (secrets redacted by the caller) and what was expected. */
export class ConfigError extends Error {
  constructor(option: string, value: unknown, why: string) {
    super(`express-msm: invalid ${option} ${JSON.stringify(value)}: ${why}`);
    this.name = 'ConfigError';
  }

  /** An option name that is not one (a typo, or a memcachedSession() option given to the store). */
  static unknownOption(name: string, why: string): ConfigError {
    const e = new ConfigError(name, undefined, why);
    e.message = `express-msm: unknown option "${name}": ${why}`;
    return e;
  }
}
