import { MemcachedStore } from '/work/main/lib/store';
const store = new MemcachedStore({ memcachedNodes: 'n1:127.0.0.1:1', storageKeyPrefix: 'static:x' });
const sess: any = { cookie: { originalMaxAge: 'x', expires: null } };
const req: any = { sessionID: 'A-n1', sessionStore: store };
try {
  const s = store.createSession(req, sess);
  console.log('created', s.cookie, s.cookie.maxAge);
  s.n = 1;
  const data = s.cookie.data; console.log(data);
  console.log(s.cookie.serialize('connect.sid', 'v'));
} catch (e) { console.log('threw', e); }
console.log(store.maxInactiveOf(sess.cookie));
store.close();
