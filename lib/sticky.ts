// msm's sticky mode: placeholder until issue #3 lands.
import type { LoadResult, LoadedMeta, ModeContext, SessionMode } from './mode';
import type { SessionId } from './session-id';
import type { StoredSession } from './transcoders/transcoder';

export class StickyMode implements SessionMode {
  constructor(private readonly ctx: ModeContext) {
    throw new Error('express-msm: sticky mode is not implemented yet');
  }
  newId(): string { return ''; }
  async load(_sid: SessionId): Promise<LoadResult | null> { return null; }
  async save(_s: SessionId, _st: StoredSession, _b: Buffer, _m: number, _meta: LoadedMeta | undefined): Promise<void> {}
  async touch(_s: SessionId, _st: StoredSession, _m: number, _meta: LoadedMeta | undefined): Promise<void> {}
  async destroy(_s: SessionId): Promise<void> {}
  async close(): Promise<void> {}
}
