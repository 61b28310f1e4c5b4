/**
 * Per-call cost of the outbound guard and the signature: N calls to a loopback endpoint with a
 * plain undici Agent (no guard, no signature) and through OutboundClient (guard + signature),
 * with kept-alive connections (as sessions call) and with a new connection per call (where the
 * guard's resolution and check run every time). Run: `npx tsx bench/outbound.ts [N]`.
 */

import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, request } from 'undici';
import { Allowlist, OutboundClient, signatureHeader } from '../src/outbound/index.js';

const N = Number(process.argv[2] ?? 2000);
const body = JSON.stringify({
  tool: 'order_status',
  call_id: 'call_1',
  arguments: { order_number: 'A-1001' },
});
const secret = 'whsec_bench_0123456789abcdef0123456789';

const server = createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    res.writeHead(200, {
      'content-type': 'application/json',
      ...(req.headers['x-close'] ? { connection: 'close' } : {}),
    });
    res.end('{"status":"shipped"}');
  });
});
await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
const port = (server.address() as AddressInfo).port;
// A host name, so the guarded path resolves and checks like a real endpoint (localhost → 127.0.0.1).
const url = `http://localhost:${port}/orders`;

type Variant = { label: string; call: () => Promise<void> };

/** Rounds of N/ROUNDS calls of each variant in turn (so drift on a shared machine hits all alike); the median round. */
async function compare(variants: Variant[]): Promise<number[]> {
  const ROUNDS = 10;
  const per = Math.max(1, Math.floor(N / ROUNDS));
  for (const v of variants) for (let i = 0; i < 200; i++) await v.call(); // warm-up
  const samples = variants.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) {
    for (const [i, v] of variants.entries()) {
      const t0 = performance.now();
      for (let k = 0; k < per; k++) await v.call();
      samples[i]!.push(((performance.now() - t0) * 1000) / per);
    }
  }
  return samples.map((s) => s.sort((a, b) => a - b)[Math.floor(s.length / 2)]!);
}

const plain = new Agent({ allowH2: false, keepAliveTimeout: 4000 });
const guarded = new OutboundClient({ allowlist: Allowlist.parse('localhost') });

console.log(
  `${N} sequential POSTs per variant to ${url} (median of 10 interleaved rounds), node ${process.version}`,
);
for (const fresh of [false, true]) {
  const extra: Record<string, string> = fresh ? { 'x-close': '1' } : {};
  const plainCall = (headers: Record<string, string>) => async () => {
    const res = await request(url, {
      dispatcher: plain,
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...headers, ...extra },
    });
    await res.body.text();
  };
  const [base, signed, full] = await compare([
    { label: 'plain', call: plainCall({}) },
    {
      label: 'signed',
      call: async () => plainCall({ 'x-sidekick-signature': signatureHeader(secret, body) })(),
    },
    {
      label: 'guarded',
      call: async () => {
        await guarded.request(url, {
          method: 'POST',
          body,
          signWith: secret,
          headers: extra,
          timeoutMs: 5000,
        });
      },
    },
  ]);
  const mode = fresh ? 'a new connection per call (resolve + check every time)' : 'kept-alive connections';
  console.log(`${mode}:`);
  console.log(`  plain undici                      ${base!.toFixed(1).padStart(7)} µs/call`);
  console.log(`  plain undici + signature          ${signed!.toFixed(1).padStart(7)} µs/call`);
  console.log(`  OutboundClient (guard + signature) ${full!.toFixed(1).padStart(6)} µs/call`);
  console.log(
    `  overhead: signature ${(signed! - base!).toFixed(1)} µs, guard + signature + module ${(full! - base!).toFixed(1)} µs per call`,
  );
}
// The two pieces alone, without the network: the HMAC of this body, and judging one address.
const micro = (label: string, fn: () => unknown) => {
  const M = 100_000;
  for (let i = 0; i < 10_000; i++) fn();
  const t0 = performance.now();
  for (let i = 0; i < M; i++) fn();
  console.log(`${label.padEnd(52)} ${(((performance.now() - t0) * 1000) / M).toFixed(2).padStart(7)} µs`);
};
const list = Allowlist.parse('');
micro('signatureHeader (HMAC-SHA256 of the body)', () => signatureHeader(secret, body));
micro('judging one address (ipaddr.js classes + allowlist)', () =>
  list.judge('api.example.com', '93.184.215.14'),
);
micro('judging an IPv4-mapped IPv6 address', () => list.judge('api.example.com', '::ffff:93.184.215.14'));
await Promise.all([plain.close(), guarded.close()]);
server.close();
