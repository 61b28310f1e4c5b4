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

async function time(label: string, fn: () => Promise<void>): Promise<number> {
  for (let i = 0; i < 200; i++) await fn(); // warm-up
  const t0 = performance.now();
  for (let i = 0; i < N; i++) await fn();
  const perCall = ((performance.now() - t0) * 1000) / N;
  console.log(`${label.padEnd(48)} ${perCall.toFixed(1).padStart(7)} µs/call`);
  return perCall;
}

const plain = new Agent({ allowH2: false, keepAliveTimeout: 4000 });
const guarded = new OutboundClient({ allowlist: Allowlist.parse('localhost') });

console.log(`${N} sequential POSTs to ${url}, node ${process.version}`);
for (const fresh of [false, true]) {
  const extra: Record<string, string> = fresh ? { 'x-close': '1' } : {};
  const base = await time(`plain undici${fresh ? ', new connection each' : ', keep-alive'}`, async () => {
    const res = await request(url, {
      dispatcher: plain,
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json', ...extra },
    });
    await res.body.text();
  });
  const signed = await time(
    `plain undici + signature${fresh ? ', new connection each' : ', keep-alive'}`,
    async () => {
      const res = await request(url, {
        dispatcher: plain,
        method: 'POST',
        body,
        headers: {
          'content-type': 'application/json',
          'x-sidekick-signature': signatureHeader(secret, body),
          ...extra,
        },
      });
      await res.body.text();
    },
  );
  const full = await time(
    `OutboundClient (guard + signature)${fresh ? ', new connection each' : ', keep-alive'}`,
    async () => {
      await guarded.request(url, { method: 'POST', body, signWith: secret, headers: extra, timeoutMs: 5000 });
    },
  );
  console.log(
    `  overhead: signature ${(signed - base).toFixed(1)} µs, guard + signature + module ${(full - base).toFixed(1)} µs per call`,
  );
}
await Promise.all([plain.close(), guarded.close()]);
server.close();
