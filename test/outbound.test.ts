/**
 * The outbound guard and client (src/outbound): every call to a URL a client wrote. Real HTTP
 * servers on loopback play the clients' endpoints; host names are given addresses by an injected
 * resolver. A tripwire makes sure a broken guard could never send a packet off this machine.
 */

import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  Allowlist,
  classify,
  OutboundClient,
  OutboundError,
  type Resolver,
  SIGNATURE_HEADER,
  verifySignature,
} from '../src/outbound/index.js';
import { type ClientEndpoint, makeVerifier, startClientEndpoint } from './support/client-endpoint.js';
import { installLoopbackOnlyTripwire } from './support/loopback-only.js';

let endpoint: ClientEndpoint;
let tripwire: ReturnType<typeof installLoopbackOnlyTripwire>;
const clients: OutboundClient[] = [];

beforeAll(async () => {
  tripwire = installLoopbackOnlyTripwire();
  endpoint = await startClientEndpoint();
});
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await endpoint?.close();
  expect(tripwire.attempts).toEqual([]);
  tripwire?.uninstall();
});

/** Names → addresses, like a DNS zone the test controls; counts lookups. */
function zone(names: Record<string, string | string[]>): Resolver & { lookups: string[] } {
  const lookups: string[] = [];
  const resolve = async (host: string) => {
    lookups.push(host);
    const found = names[host];
    if (!found) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return (Array.isArray(found) ? found : [found]).map((address) => ({
      address,
      family: address.includes(':') ? 6 : 4,
    }));
  };
  return Object.assign(resolve, { lookups });
}

function client(opts: ConstructorParameters<typeof OutboundClient>[0] = {}): OutboundClient {
  const c = new OutboundClient(opts);
  clients.push(c);
  return c;
}

async function refusal(p: Promise<unknown>): Promise<OutboundError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err, 'expected the call to be refused').toBeInstanceOf(OutboundError);
  return err as OutboundError;
}

describe('address classes', () => {
  it.each([
    ['8.8.8.8', true, 'public'],
    ['2606:4700::1111', true, 'public'],
    ['::ffff:8.8.8.8', true, 'public'],
    ['64:ff9b::808:808', true, 'public'],
    ['127.0.0.1', false, 'loopback'],
    ['127.1.2.3', false, 'loopback'],
    ['::1', false, 'loopback'],
    ['10.0.0.1', false, 'private'],
    ['172.16.5.4', false, 'private'],
    ['192.168.1.1', false, 'private'],
    ['169.254.1.1', false, 'linkLocal'],
    ['fe80::1', false, 'linkLocal'],
    ['fc00::1', false, 'uniqueLocal'],
    ['fd12:3456::1', false, 'uniqueLocal'],
    ['100.64.0.1', false, 'carrierGradeNat'],
    ['224.0.0.1', false, 'multicast'],
    ['ff02::1', false, 'multicast'],
    ['255.255.255.255', false, 'broadcast'],
    ['0.0.0.0', false, 'unspecified'],
    ['::', false, 'unspecified'],
    ['192.0.2.1', false, 'reserved'],
    ['240.0.0.1', false, 'reserved'],
    ['169.254.169.254', false, 'metadata'],
    ['169.254.170.2', false, 'metadata'],
    ['fd00:ec2::254', false, 'metadata'],
    ['100.100.100.200', false, 'metadata'],
    ['168.63.129.16', false, 'metadata'],
    ['::ffff:169.254.169.254', false, 'metadata'],
    ['::ffff:127.0.0.1', false, 'ipv4Mapped of loopback'],
    ['::ffff:10.0.0.1', false, 'ipv4Mapped of private'],
    ['64:ff9b::a00:1', false, 'rfc6052 of private'],
    ['64:ff9b:1::7f00:1', false, 'rfc6052 of loopback'],
    ['::7f00:1', false, 'ipv4Compatible'],
    ['2002:7f00:1::1', false, '6to4'],
    ['2001:0:4136:e378::1', false, 'teredo'],
    ['2001:db8::1', false, 'reserved'],
    ['100::1', false, 'discard'],
  ])('%s: allowed %s (%s)', (address, allowed, range) => {
    expect(classify(address)).toEqual({ allowed, range });
  });

  it('the allowlist opens named hosts and CIDRs, never metadata or unspecified addresses; a bad entry is named', () => {
    const list = Allowlist.parse('localhost, 127.0.0.0/8 [::1] tools.internal.test');
    expect(list.judge('localhost', '::1')).toEqual({ allowed: true, range: 'loopback, allowlisted' });
    expect(list.judge('elsewhere.test', '127.0.0.9').allowed).toBe(true);
    expect(list.judge('tools.internal.test', '10.1.2.3').allowed).toBe(true);
    expect(list.judge('elsewhere.test', '10.1.2.3')).toEqual({ allowed: false, range: 'private' });
    expect(list.judge('tools.internal.test', '169.254.169.254')).toEqual({
      allowed: false,
      range: 'metadata',
    });
    expect(Allowlist.parse('0.0.0.0/0').judge('x.test', '0.0.0.0')).toEqual({
      allowed: false,
      range: 'unspecified',
    });
    expect(() => Allowlist.parse('localhost, http://x')).toThrow(
      '"http://x" is neither a host name nor an IP address or CIDR',
    );
  });
});

describe('what a refusal says', () => {
  it('a metadata or unspecified address is never allowed, whatever the allowlist: the message says so', async () => {
    const client = new OutboundClient({ allowlist: Allowlist.parse('169.254.169.254, 0.0.0.0') });
    await expect(client.check('http://169.254.169.254/')).rejects.toThrow(
      '169.254.169.254 is a metadata address: refused (never allowed, not even by OUTBOUND_ALLOWLIST)',
    );
    await expect(client.check('http://0.0.0.0/')).rejects.toThrow(
      '0.0.0.0 is an unspecified address: refused',
    );
  });
});

describe('refused destinations: nothing is sent', () => {
  it.each([
    ['127.0.0.1 without the allowlist', () => endpoint.url, 'loopback'],
    ['[::1]', () => `http://[::1]:${endpoint.port}/`, 'loopback'],
    ['10.x', () => 'http://10.0.0.1/orders', 'private'],
    ['the metadata service', () => 'http://169.254.169.254/latest/meta-data/', 'metadata'],
    [
      'an IPv4-mapped loopback',
      () => `http://[::ffff:127.0.0.1]:${endpoint.port}/`,
      'ipv4Mapped of loopback',
    ],
    ['a decimal-encoded loopback', () => `http://2130706433:${endpoint.port}/`, 'loopback'],
    ['0.0.0.0', () => `http://0.0.0.0:${endpoint.port}/`, 'unspecified'],
  ])('%s', async (_name, url, range) => {
    const before = endpoint.requests.length;
    const err = await refusal(client().request(url(), { method: 'POST', body: '{}' }));
    expect(err.kind).toBe('refused');
    expect(err.detail.range).toBe(range);
    expect(err.message).toContain(`is ${/^[aeiou]/i.test(range) ? 'an' : 'a'} ${range} address: refused`);
    expect(endpoint.requests.length).toBe(before);
  });

  it('a host name that resolves to a private address, or to a public and a private one', async () => {
    const dns = zone({
      'shop.example.test': '10.0.0.7',
      'mixed.example.test': ['93.184.215.14', '192.168.0.4'],
    });
    const c = client({ resolve: dns });
    const err = await refusal(c.request('http://shop.example.test/orders'));
    expect(err.message).toBe(
      'shop.example.test resolves to 10.0.0.7, which is a private address: refused (only public addresses, or hosts in OUTBOUND_ALLOWLIST)',
    );
    expect((await refusal(c.request('https://mixed.example.test/'))).detail).toEqual({
      host: 'mixed.example.test',
      address: '192.168.0.4',
      range: 'private',
    });
    expect((await refusal(c.request('http://nowhere.example.test/'))).kind).toBe('unresolvable');
    expect((await refusal(c.check('http://shop.example.test/'))).kind).toBe('refused');
  });

  it('a redirect to a refused address is not followed', async () => {
    const dns = zone({ 'tools.example.test': '127.0.0.1', 'evil.example.test': '127.0.0.1' });
    const c = client({ resolve: dns, allowlist: Allowlist.parse('tools.example.test') });
    for (const [target, range] of [
      ['http://169.254.169.254/latest/meta-data/iam/', 'metadata'],
      ['http://10.0.0.1/', 'private'],
      [`http://evil.example.test:${endpoint.port}/stolen`, 'loopback'],
    ] as const) {
      endpoint.handle(() => ({ status: 302, headers: { location: target } }));
      const before = endpoint.requests.length;
      const err = await refusal(c.request(`http://tools.example.test:${endpoint.port}/start`));
      expect(err.detail.range).toBe(range);
      expect(endpoint.requests.length - before).toBe(1); // the first hop only
    }
    expect(endpoint.requests.some((r) => r.path === '/stolen')).toBe(false);
  });
});

describe('calls that are allowed', () => {
  const allowed = () => client({ allowlist: Allowlist.parse('127.0.0.1') });

  it('signs the body; the endpoint verifies it as the README says and refuses a replay; no cookies', async () => {
    const secret = 'whsec_test_0123456789abcdef';
    const verify = makeVerifier(secret);
    const verdicts: Array<true | string> = [];
    endpoint.handle((req) => {
      const verdict = verify(req.headers[SIGNATURE_HEADER], req.body);
      verdicts.push(verdict);
      return verdict === true
        ? { json: { status: 'shipped' }, headers: { 'set-cookie': 'session=abc; Path=/' } }
        : { status: 401, json: { error: verdict } };
    });
    const c = allowed();
    const body = JSON.stringify({ tool: 'order_status', arguments: { order: 'A-1' } });
    const res = await c.request(`${endpoint.url}/orders`, { method: 'POST', body, signWith: secret });
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body.toString())).toEqual({ status: 'shipped' });
    expect(res.headers['set-cookie']).toBeUndefined();
    const sent = endpoint.requests.at(-1)!;
    expect(sent.headers[SIGNATURE_HEADER]).toMatch(/^t=\d+,v1=[0-9a-f]{64}$/);
    expect(verifySignature(sent.headers[SIGNATURE_HEADER], sent.body, secret)).toMatchObject({ valid: true });
    expect(verifySignature(sent.headers[SIGNATURE_HEADER], `${sent.body} `, secret)).toEqual({
      valid: false,
      reason: 'mismatch',
    });

    // The next call (every tool call's body has its own call_id) sends no cookie although the
    // endpoint set one.
    await c.request(`${endpoint.url}/orders`, {
      method: 'POST',
      body: body.replace('A-1', 'A-2'),
      signWith: secret,
    });
    expect(endpoint.requests.at(-1)!.headers.cookie).toBeUndefined();

    // The same request again (a replay of the captured signature) is refused by the endpoint.
    const replay = await fetch(`${endpoint.url}/orders`, {
      method: 'POST',
      body: sent.body,
      headers: { [SIGNATURE_HEADER]: sent.headers[SIGNATURE_HEADER]! },
    });
    expect(replay.status).toBe(401);
    expect(verdicts).toEqual([true, true, 'replayed']);
    // A signature from ten minutes ago is stale.
    expect(
      verifySignature(sent.headers[SIGNATURE_HEADER], sent.body, secret, { nowMs: Date.now() + 600_000 }),
    ).toEqual({
      valid: false,
      reason: 'stale',
    });
  });

  it('cuts an oversized response at maxBytes and says so', async () => {
    endpoint.handle((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      // 4 MiB in 64 KiB writes; the client stops reading long before the end.
      const chunk = 'x'.repeat(64 * 1024);
      let sent = 0;
      const pump = () => {
        while (sent < 64) {
          sent++;
          if (!res.write(chunk)) return res.once('drain', pump);
        }
        res.end();
      };
      res.on('error', () => undefined);
      pump();
    });
    const res = await allowed().request(`${endpoint.url}/big`, { maxBytes: 10_000 });
    expect(res.status).toBe(200);
    expect(res.body.length).toBe(10_000);
    expect(res.truncated).toBe(true);
  });

  it('gives up at the deadline with a timeout error', async () => {
    endpoint.handle(async (_req, res) => {
      await sleep(3000);
      if (!res.destroyed) res.end('late');
    });
    const started = performance.now();
    const err = await refusal(allowed().request(`${endpoint.url}/slow`, { timeoutMs: 300 }));
    expect(err.kind).toBe('timeout');
    expect(err.message).toBe(`127.0.0.1:${endpoint.port} did not answer within 300 ms`);
    expect(performance.now() - started).toBeLessThan(2000);
  });

  it('follows a few redirects by hand; the secret header stays with the first origin; too many is an error', async () => {
    const dns = zone({ 'a.example.test': '127.0.0.1', 'b.example.test': '127.0.0.1' });
    const c = client({ resolve: dns, allowlist: Allowlist.parse('a.example.test b.example.test') });
    const base = (host: string) => `http://${host}:${endpoint.port}`;
    endpoint.handle((req) => {
      if (req.path === '/one') return { status: 307, headers: { location: '/two' } };
      if (req.path === '/two')
        return { status: 308, headers: { location: `${base('b.example.test')}/three` } };
      if (req.path === '/three') return { json: { at: 'three', method: req.method, body: req.body } };
      return { status: 302, headers: { location: '/loop' } };
    });
    const from = endpoint.requests.length;
    const res = await c.request(`${base('a.example.test')}/one`, {
      method: 'POST',
      body: '{"x":1}',
      secretHeaders: { authorization: 'Bearer sk_live_secret_value' },
    });
    expect(res.redirects).toBe(2);
    expect(JSON.parse(res.body.toString())).toEqual({ at: 'three', method: 'POST', body: '{"x":1}' });
    const hops = endpoint.requests.slice(from);
    expect(hops.map((h) => [h.path, h.headers.authorization])).toEqual([
      ['/one', 'Bearer sk_live_secret_value'],
      ['/two', 'Bearer sk_live_secret_value'],
      ['/three', undefined],
    ]);
    const err = await refusal(c.request(`${base('a.example.test')}/loop`));
    expect(err.kind).toBe('too_many_redirects');
    expect(err.message).not.toContain('sk_live');
  });

  it('connects to the address it checked: one resolution per connection, so rebinding cannot swap it', async () => {
    const other = await startClientEndpoint('127.0.0.2', endpoint.port).catch(() => undefined);
    try {
      let answers = 0;
      const rebinding: Resolver = async () => [
        { address: answers++ === 0 ? '127.0.0.1' : '127.0.0.2', family: 4 },
      ];
      const c = client({ resolve: rebinding, allowlist: Allowlist.parse('127.0.0.1') });
      endpoint.handle(() => ({ json: { server: 'checked' }, headers: { connection: 'close' } }));
      const first = await c.request(`http://rebind.example.test:${endpoint.port}/`);
      expect(JSON.parse(first.body.toString())).toEqual({ server: 'checked' });
      expect(answers).toBe(1);
      // The next connection resolves again and gets the other address: refused, and it gets nothing.
      await sleep(50);
      const err = await refusal(c.request(`http://rebind.example.test:${endpoint.port}/`));
      expect(err.detail).toMatchObject({ address: '127.0.0.2', range: 'loopback' });
      expect(other?.requests ?? []).toEqual([]);
    } finally {
      await other?.close();
    }
  });

  it('refuses headers the worker sets itself, URLs with credentials and other schemes', async () => {
    const c = allowed();
    expect((await refusal(c.request(endpoint.url, { headers: { Cookie: 'a=b' } }))).message).toBe(
      'the header Cookie is set by the worker, not by a caller',
    );
    expect((await refusal(c.request(`http://user:pw@127.0.0.1:${endpoint.port}/`))).kind).toBe(
      'invalid_request',
    );
    expect((await refusal(c.request('file:///etc/passwd'))).message).toBe(
      'file: URLs are not called (only http and https)',
    );
  });
});
