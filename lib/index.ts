// Public exports only.
export { MemcachedStore, LOADED, DEFAULT_MAX_SESSION_BYTES } from './store';
export type { StoreStats } from './store';
export { ConfigError, DEFAULTS, parseMemcachedNodes } from './config';
export type { MemcachedStoreOptions, LockingModeName } from './config';
export { JsonTranscoder } from './transcoders/json';
export type { Transcoder, StoredSession, StoredCookie } from './transcoders/transcoder';
export type { Logger } from './logger';
export { encodeValidity, decodeValidity } from './validity';
export type { Validity } from './validity';
export { memcachedSession } from './middleware';
export type { MemcachedSessionOptions, MemcachedSessionMiddleware } from './middleware';
export type { LockingConfig, LockingStrategy, LockOutcome, LockHandle } from './locking';
