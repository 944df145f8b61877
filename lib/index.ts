// Public exports only.
export { MemcachedStore, DEFAULT_MAX_SESSION_BYTES } from './express/store';
export type { StoreStats } from './express/store';
export type { StoreHealth } from './memcached/nodes';
export { DEFAULTS, parseMemcachedNodes } from './express/config';
export {
  ConfigError,
  StoreClosedError,
  SessionTooLargeError,
  StorageUnavailableError,
  LockTimeoutError,
  TranscoderError,
} from './core/errors';
export type {
  MemcachedStoreOptions,
  MiddlewareOnlyOptions,
  LockingModeName,
  AutoDiscoveryOptions,
} from './express/config';
export { JsonTranscoder } from './transcoders/json';
export type { Transcoder, TranscoderContext, StoredSession, StoredCookie } from './transcoders/transcoder';
export { EncryptingTranscoder } from './transcoders/encrypting';
export type { EncryptingTranscoderOptions, EncryptionKey } from './transcoders/encrypting';
export { AvroTranscoder, TimestampMillisType, MAX_AVRO_LONG, MIN_AVRO_LONG } from './transcoders/avro';
export type { AvroTranscoderOptions, AvroSchema } from './transcoders/avro';
export { TranscoderKind, HEADER_LENGTH, writeHeader, hasHeader } from './transcoders/transcoder';
export type { Logger, LoggerOption } from './core/logger';
export type { IndexBy } from './modes/user-index';
export type { SessionOptionsGiven } from './express/option-parsers';
export type { Callback } from './express/callbacks';
export type { MemcachedNodeConfig } from './memcached/node-list';
export { encodeValidity, decodeValidity } from './memcached/validity';
export type { Validity } from './memcached/validity';
export { memcachedSession } from './express/middleware';
export type { MemcachedSessionOptions, MemcachedSessionMiddleware } from './express/middleware';
export type { LockingConfig, LockingStrategy, LockOutcome, LockHandle } from './express/locking';
export { registerMetrics } from './express/metrics';
export type { MetricsRegistry, RegisterMetricsOptions, RegisteredMetrics } from './express/metrics';
