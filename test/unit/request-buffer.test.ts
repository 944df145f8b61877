// node-client builds its binary-protocol requests itself (one buffer instead of memjs's five or six) and hands them
// to memjs's perform: they must be byte for byte what memjs's own get/set/add/delete/touch send.
import { requestBuffer } from '../../lib/memcached/node-client';
// eslint-disable-next-line @typescript-eslint/no-var-requires
const utils = require('memjs/lib/memjs/utils');

const key = 'bak:validity:0123456789ABCDEF0123456789ABCDEF-n1';
const value = Buffer.from([0x4d, 0x53, 1, 1, 0, 255, 7]);
const setExtras = (expires: number) => Buffer.concat([Buffer.from('00000000', 'hex'), utils.makeExpiration(expires)]);

describe('requestBuffer', () => {
  it.each([0, 1, 3600, 2_592_000, 1_800_000_000, 0xffffffff])('equals memjs set/add with expiration %d', (expires) => {
    for (const opcode of [0x01, 0x02]) {
      expect(requestBuffer(opcode, key, 42, expires, value)).toEqual(
        utils.makeRequestBuffer(opcode, key, setExtras(expires), value, 42),
      );
    }
  });

  it('equals memjs get and delete (no extras, no value)', () => {
    expect(requestBuffer(0x00, key, 7, undefined, undefined)).toEqual(utils.makeRequestBuffer(0, key, '', '', 7));
    expect(requestBuffer(0x04, key, 8, undefined, undefined)).toEqual(utils.makeRequestBuffer(4, key, '', '', 8));
  });

  it('equals memjs touch (expiration extras, no value)', () => {
    expect(requestBuffer(0x1c, key, 9, 7200, undefined)).toEqual(
      utils.makeRequestBuffer(0x1c, key, utils.makeExpiration(7200), '', 9),
    );
  });

  it('carries the full 32-bit sequence number memjs matches responses by', () => {
    expect(requestBuffer(0x00, key, 0xfffffffe, undefined, undefined)).toEqual(
      utils.makeRequestBuffer(0, key, '', '', 0xfffffffe),
    );
  });

  it('carries an empty value', () => {
    expect(requestBuffer(0x01, key, 1, 60, Buffer.alloc(0))).toEqual(
      utils.makeRequestBuffer(1, key, setExtras(60), '', 1),
    );
  });

  it('carries a CAS token in header bytes 16-23 (set with CAS: the user index), else zeros', () => {
    const cas = Buffer.from('0102030405060708', 'hex');
    const withCas = requestBuffer(0x01, key, 3, 60, value, cas);
    expect(withCas.subarray(16, 24)).toEqual(cas);
    const plain = requestBuffer(0x01, key, 3, 60, value);
    expect(plain.subarray(16, 24)).toEqual(Buffer.alloc(8));
    // Everything else is the plain request.
    expect(Buffer.concat([withCas.subarray(0, 16), withCas.subarray(24)])).toEqual(
      Buffer.concat([plain.subarray(0, 16), plain.subarray(24)]),
    );
  });
});
