// lib/express/express-session.ts relies on express-session internals: its Store.createSession, the names of its
// response callbacks, Session's `req`. This pins the versions those were checked against.
import * as fs from 'fs';
import * as path from 'path';
import session from 'express-session';

const installed: string = JSON.parse(fs.readFileSync(path.join(path.dirname(require.resolve('express-session/package.json')), 'package.json'), 'utf8')).version;

it('the installed express-session is a version the internals were checked against (1.17-1.19)', () => {
  const [major, minor] = installed.split('.').map(Number);
  expect(major).toBe(1);
  expect(minor).toBeGreaterThanOrEqual(17);
  expect(minor).toBeLessThanOrEqual(19);
});

it("express-session still names its response callbacks onsave and ontouch, and keeps createSession on Store", () => {
  const src = fs.readFileSync(require.resolve('express-session'), 'utf8');
  expect(src).toMatch(/function onsave\(/);
  expect(src).toMatch(/function ontouch\(/);
  expect(typeof (session as any).Store.prototype.createSession).toBe('function');
});

it("a Session keeps its request as a non-enumerable req", () => {
  const req: any = { sessionID: 'x' };
  const s = new (session as any).Session(req, { cookie: new (session as any).Cookie() });
  expect(s.req).toBe(req);
  expect(Object.keys(s)).not.toContain('req');
});
