// JSON transcoder: the default. Header + UTF-8 JSON.
import {
  HEADER_LENGTH,
  type StoredSession,
  type Transcoder,
  TranscoderKind,
  hasHeader,
  isStoredSession,
  writeHeader,
} from './transcoder';

/** Sessions as JSON (the default transcoder): Dates and other values as JSON.stringify writes them. */
export class JsonTranscoder implements Transcoder {
  readonly name = 'json';

  encode(session: StoredSession): Buffer {
    const json = JSON.stringify(session);
    const len = Buffer.byteLength(json);
    const out = Buffer.allocUnsafe(HEADER_LENGTH + len);
    writeHeader(out, TranscoderKind.json);
    out.write(json, HEADER_LENGTH, len, 'utf8');
    return out;
  }

  decode(bytes: Buffer): StoredSession | null {
    if (!hasHeader(bytes, TranscoderKind.json)) return null;
    try {
      const v: unknown = JSON.parse(bytes.toString('utf8', HEADER_LENGTH));
      return isStoredSession(v) ? v : null;
    } catch {
      return null;
    }
  }
}
