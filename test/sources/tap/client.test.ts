import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { FakeClock } from '../../helpers/fake-clock.ts';
import { TapClient, TAP_PATHS } from '../../../plugin/sources/tap/client.ts';
import { TapBadRequestError, TapThrottledError } from '../../../plugin/sources/tap/errors.ts';
import { CredentialsError, VendorHttpError, VendorRequestError } from '../../../plugin/errors.ts';
import { startTapSimulator, NO_QUIRKS, type TapSimulator } from '../../../plugin/simulator/tap/index.ts';

const T = Date.UTC(2026, 10, 23, 12, 0, 0);
const H = 3600_000;
const clock = new FakeClock(T);
let sim: TapSimulator;
const signal = new AbortController().signal;

before(async () => {
  sim = await startTapSimulator({ clock, quirks: { ...NO_QUIRKS }, ratesPerHour: { clicksBlocked: 30, clicksPermitted: 0, messagesBlocked: 10, messagesDelivered: 10 } });
});
after(async () => sim.close());

const client = (o: Partial<ConstructorParameters<typeof TapClient>[0]> = {}) =>
  new TapClient({ baseUrl: sim.url, ...sim.credentials, threatStatus: [], threatType: [], timeoutMs: 5000, input: 'tap-test', ...o });

test('a window: explicit interval, format=json, Basic auth, arrays routed by name', async () => {
  const c = client({ threatStatus: ['active', 'cleared', 'falsePositive'], threatType: ['url'] });
  const w = { start: T - 2 * H, end: T - H };
  const a = await c.fetchWindow(TAP_PATHS.all, w, signal);
  assert.equal(a.status, 200);
  assert.equal(a.queryEndTime, '2026-11-23T11:00:00Z');
  assert.equal(a.arrays.clicksBlocked!.length, 30);
  const req = sim.requests.at(-1)!;
  assert.equal(req.path, '/v2/siem/all');
  assert.deepEqual(req.query['format'], ['json']);
  assert.deepEqual(req.query['interval'], ['2026-11-23T10:00:00Z/2026-11-23T11:00:00Z']);
  assert.deepEqual(req.query['threatStatus'], ['active', 'cleared', 'falsePositive']);
  assert.deepEqual(req.query['threatType'], ['url']);
  assert.equal(req.selector, 'interval');
  assert.ok(!c.url(TAP_PATHS.all, w).includes(sim.credentials.password), 'no credentials in the URL');
  await c.close();
});

test('empty answers: 200 with empty arrays, 200 without arrays, 204', async () => {
  const c = client();
  for (const style of ['200', 'missing', '204'] as const) {
    sim.setQuirks({ emptyResponse: style });
    const a = await c.fetchWindow(TAP_PATHS.clicksPermitted, { start: T - 2 * H, end: T - H }, signal);
    assert.equal(a.status, style === '204' ? 204 : 200, style);
    assert.equal(a.arrays.clicksPermitted?.length ?? 0, 0, style);
  }
  sim.setQuirks({ emptyResponse: '200' });
  await c.close();
});

test('errors map to the Devo codes, with status, text and window, never the credentials', async () => {
  const c = client();
  const w = { start: T - 2 * H, end: T - H };
  const secretish = [sim.credentials.password, Buffer.from(`${sim.credentials.username}:${sim.credentials.password}`).toString('base64')];
  const cases: Array<{ name: string; setup: () => void; w?: { start: number; end: number }; check: (e: unknown) => void; c?: TapClient }> = [
    {
      name: '401 -> 100',
      setup: () => {},
      c: client({ password: 'wrong-secret-123' }),
      check: (e) => {
        assert.ok(e instanceof CredentialsError, String(e));
        assert.equal(e.code, 100);
        assert.match(e.message, /HTTP 401/);
        assert.ok(!e.message.includes('wrong-secret-123'));
      },
    },
    {
      name: '403 -> 100',
      setup: () => sim.inject({ kind: 'status', status: 403 }),
      check: (e) => assert.ok(e instanceof CredentialsError && /HTTP 403/.test(e.message)),
    },
    {
      name: '400 too far into the past',
      setup: () => {},
      w: { start: T - 8 * 24 * H, end: T - 8 * 24 * H + H },
      check: (e) => {
        assert.ok(e instanceof TapBadRequestError, String(e));
        assert.equal(e.refusal, 'too_far_in_past');
        assert.equal(e.code, 300);
        assert.match(e.message, /HTTP 400 "The requested start time is too far into the past.*" for input tap-test, \/v2\/siem\/all interval 2026-11-15T12:00:00Z\/2026-11-15T13:00:00Z/);
      },
    },
    {
      name: '400 still current',
      setup: () => {},
      w: { start: T - 10 * 60_000, end: T + 60_000 },
      check: (e) => assert.ok(e instanceof TapBadRequestError && e.refusal === 'still_current'),
    },
    {
      name: '429',
      setup: () => sim.inject({ kind: 'status', status: 429 }),
      check: (e) => assert.ok(e instanceof TapThrottledError && e.status === 429 && e.code === 300),
    },
    {
      name: '500 -> 300',
      setup: () => sim.inject({ kind: 'status', status: 503, body: 'maintenance' }),
      check: (e) => {
        assert.ok(e instanceof VendorHttpError && e.status === 503 && e.code === 300, String(e));
        assert.match(e.message, /HTTP 503 "maintenance"/);
      },
    },
    {
      name: 'connection reset -> 301',
      setup: () => sim.inject({ kind: 'reset' }),
      check: (e) => assert.ok(e instanceof VendorRequestError && e.code === 301, String(e)),
    },
    {
      name: 'no answer in time -> 301',
      setup: () => sim.inject({ kind: 'hang' }),
      c: client({ timeoutMs: 300 }),
      check: (e) => {
        assert.ok(e instanceof VendorRequestError && e.code === 301, String(e));
        assert.match(e.message, /no complete answer within 0.3 s/);
      },
    },
  ];
  for (const k of cases) {
    k.setup();
    const cl = k.c ?? c;
    const err = await cl.fetchWindow(TAP_PATHS.all, k.w ?? w, signal).then(
      () => assert.fail(`${k.name}: expected an error`),
      (e: unknown) => e,
    );
    k.check(err);
    for (const s of secretish) assert.ok(!String((err as Error).message).includes(s), `${k.name}: no credentials in the message`);
    if (cl !== c) await cl.close();
  }
  await c.close();
});

test('shutdown aborts a request in flight with the signal\'s reason', async () => {
  const c = client();
  const ac = new AbortController();
  sim.inject({ kind: 'hang' });
  const p = c.fetchWindow(TAP_PATHS.all, { start: T - 2 * H, end: T - H }, ac.signal);
  setTimeout(() => ac.abort(new Error('shutting down')), 20);
  await assert.rejects(p, /shutting down/);
  await c.close();
});

test('the default dispatcher honours HTTP_PROXY / NO_PROXY', async () => {
  const seen: string[] = [];
  const proxy: Server = createServer((req, res) => {
    seen.push(req.url ?? '');
    const up = httpRequest(req.url!, { method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    req.pipe(up);
  });
  // undici's proxy agent tunnels with CONNECT, for http: targets too.
  proxy.on('connect', (req, socket, head) => {
    seen.push(`CONNECT ${req.url}`);
    const [host, port] = (req.url ?? '').split(':');
    const up = connect(Number(port), host!, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('error', () => up.destroy());
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;
  const saved = { HTTP_PROXY: process.env.HTTP_PROXY, NO_PROXY: process.env.NO_PROXY, http_proxy: process.env.http_proxy, no_proxy: process.env.no_proxy };
  try {
    delete process.env.http_proxy;
    delete process.env.no_proxy;
    process.env.HTTP_PROXY = proxyUrl;
    delete process.env.NO_PROXY;
    const via = client({ dispatcher: undefined });
    await via.fetchWindow(TAP_PATHS.all, { start: T - 2 * H, end: T - H }, signal);
    await via.close();
    assert.equal(seen.length, 1);
    assert.equal(seen[0], `CONNECT ${new URL(sim.url).host}`, 'the request went through the proxy');

    process.env.NO_PROXY = '127.0.0.1';
    const direct = client({ dispatcher: undefined });
    await direct.fetchWindow(TAP_PATHS.all, { start: T - 2 * H, end: T - H }, signal);
    await direct.close();
    assert.equal(seen.length, 1, 'NO_PROXY bypasses the proxy');
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    proxy.closeAllConnections();
    await new Promise<void>((r) => proxy.close(() => r()));
  }
});
