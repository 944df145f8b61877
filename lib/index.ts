// Public exports only.
export { MemcachedStore, LOADED, DEFAULT_MAX_SESSION_BYTES } from './store';
export type { StoreStats } from './store';
export { ConfigError, DEFAULTS, parseMemcachedNodes } from './config';
export type { MemcachedStoreOptions, LockingModeName } from './config';
export { JsonTranscoder } from './transcoders/json';
export type { Transcoder, StoredSession, StoredCookie } from './transcoders/transcoder';
export { AvroTranscoder, TimestampMillisType, MAX_AVRO_LONG, MIN_AVRO_LONG } from './transcoders/avro';
export type { AvroTranscoderOptions } from './transcoders/avro';
export { TranscoderKind, HEADER_LENGTH, writeHeader, hasHeader } from './transcoders/transcoder';
export type { Logger } from './logger';
export { encodeValidity, decodeValidity } from './validity';
export type { Validity } from './validity';
export { memcachedSession } from './middleware';
export type { MemcachedSessionOptions, MemcachedSessionMiddleware } from './middleware';
export type { LockingConfig, LockingStrategy, LockOutcome, LockHandle } from './locking';
export { registerMetrics } from './metrics';
export type { MetricsRegistry, RegisterMetricsOptions, RegisteredMetrics } from './metrics';
