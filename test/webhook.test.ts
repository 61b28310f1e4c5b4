import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { verifySignature } from '../src/outbound/index.js';
import type { WorkItem } from '../src/work/queue.js';
import type { PostSessionPayload } from '../src/work/session-payload.js';
import { enqueueWebhook, type SessionReport, WEBHOOK } from '../src/work/webhook.js';
import {
  type AfterSessionBed,
  converse,
  digestResponder,
  runnerFor,
  setSettings,
  startAfterSessionBed,
} from './support/after-session.js';
import { json, sidekick } from './support/cli.js';
import { type ClientEndpoint, makeVerifier, startClientEndpoint } from './support/client-endpoint.js';
import { installLoopbackOnlyTripwire } from './support/loopback-only.js';

/**
 * The signed end-of-session webhook at a client's endpoint on loopback (allowlisted, as an operator
 * allowlists local endpoints: OUTBOUND_ALLOWLIST): verifiable with the client's signing secret
 * (from `sidekick secrets signing-secret`) the way the README says, retried after a 500, delivered once, listed and redelivered by the CLI; and refused for a
 * private or metadata address before anything is sent.
 */

let bed: AfterSessionBed;
let endpoint: ClientEndpoint;
/** The client's signing secret as its operator gets it to give to the client (`sidekick secrets signing-secret`). */
async function signingSecretOf(clientId: string): Promise<string> {
  const run = await sidekick(['secrets', 'signing-secret', '--client', clientId, '--json'], bed.env);
  return json<{ signing_secret: string }>(run).signing_secret;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  bed = await startAfterSessionBed();
  endpoint = await startClientEndpoint();
  bed.openai.setResponder(
    digestResponder(() => ({
      title: 'Chain care',
      summary: 'The user asked how often to oil a chain.',
      facts: [],
    })),
  );
});
afterAll(async () => {
  await Promise.all([bed?.stop(), endpoint?.close()]);
});
beforeEach(async () => {
  endpoint.requests.length = 0;
  await bed.stack.platform.sql.exec('DELETE FROM work_items');
});

const A = () => bed.stack.demo!.adventurers[0]!;
const B = () => bed.stack.demo!.adventurers[1]!;

async function deliveries(clientId: string) {
  return bed.stack.platform.sql.query<
    Pick<WorkItem, 'id' | 'status' | 'attempts' | 'last_error'> & { result: unknown }
  >(
    `SELECT id, status, attempts, last_error, result FROM work_items WHERE kind = $1 AND client_id = $2 ORDER BY created_at`,
    [WEBHOOK, clientId],
  );
}

describe('the post-session webhook', () => {
  it('arrives signed and verifiable, is retried after a 500, and is delivered once', async () => {
    const user = randomUUID();
    await setSettings(bed.stack, A().clientId, {
      webhook_url: `${endpoint.url}/hooks/sidekick`,
      webhook_transcript: true,
      redaction: 'mask',
    });
    const SECRET = await signingSecretOf(A().clientId);
    let calls = 0;
    endpoint.handle(() => (calls++ === 0 ? { status: 500, text: 'oops' } : { json: { received: true } }));
    const worker = bed.runtime();
    const runner = runnerFor(worker);
    const { prepared } = await converse(
      bed.runtime(),
      A(),
      ['How often should I oil my chain? Mail me at a@b.io'],
      {
        userId: user,
      },
    );
    expect(await runner.drain()).toBe(2); // the post-session job, then the first delivery (500)
    let [hook] = await deliveries(A().clientId);
    expect(hook).toMatchObject({
      status: 'pending',
      attempts: 1,
      last_error: `127.0.0.1:${endpoint.port} answered HTTP 500`,
    });
    await sleep(1100);
    expect(await runner.drain()).toBe(1);
    [hook] = await deliveries(A().clientId);
    expect(hook).toMatchObject({ status: 'done', attempts: 2, result: { status: 200 } });

    expect(endpoint.requests).toHaveLength(2);
    const verify = makeVerifier(SECRET);
    for (const req of endpoint.requests) {
      expect(req.method).toBe('POST');
      expect(req.path).toBe('/hooks/sidekick');
      expect(req.headers['content-type']).toBe('application/json');
      // The README's check, in plain node:crypto, and the worker's own.
      expect(verify(req.headers['x-sidekick-signature'], req.body)).toBe(true);
      expect(verifySignature(req.headers['x-sidekick-signature'], req.body, SECRET)).toMatchObject({
        valid: true,
      });
      expect(verifySignature(req.headers['x-sidekick-signature'], req.body, 'another secret')).toMatchObject({
        valid: false,
      });
      expect(req.headers['x-sidekick-event-id']).toBe(hook!.id);
    }
    expect(endpoint.requests.map((r) => r.headers['x-sidekick-delivery-attempt'])).toEqual(['1', '2']);
    const report = JSON.parse(endpoint.requests[1]!.body) as SessionReport;
    expect(report).toMatchObject({
      type: 'session.ended',
      event_id: hook!.id,
      client_id: A().clientId,
      conversation_id: prepared.conversationId,
      sidekick: { id: A().agentId, slug: A().agentSlug },
      user_id: user,
      title: 'Chain care',
      summary: 'The user asked how often to oil a chain.',
    });
    expect(report.duration_seconds).toBeGreaterThanOrEqual(0);
    expect(Date.parse(report.ended_at)).toBeGreaterThanOrEqual(Date.parse(report.started_at));
    expect(report.usage).toBeUndefined();
    // The transcript as stored: the client redacts, so the address is masked.
    expect(report.transcript?.map((t) => t.role).sort()).toEqual(['assistant', 'assistant', 'user']);
    expect(report.transcript?.find((t) => t.role === 'user')?.content).toBe(
      'How often should I oil my chain? Mail me at [email]',
    );
    expect(endpoint.requests[1]!.body).not.toContain('a@b.io');

    // Not twice: nothing is due, and queueing the same session's report again is the same item.
    expect(await runner.drain()).toBe(0);
    const [{ payload }] = (await bed.stack.platform.sql.query(
      'SELECT payload FROM work_items WHERE id = $1',
      [hook!.id],
    )) as [{ payload: PostSessionPayload }];
    const again = await enqueueWebhook(worker.work, payload);
    expect(again.id).toBe(hook!.id);
    expect(await runner.drain()).toBe(0);
    expect(endpoint.requests).toHaveLength(2);
  });

  it('without webhook_transcript the report has no transcript; `webhooks list` and `redeliver` work from the CLI', async () => {
    await setSettings(bed.stack, A().clientId, { webhook_url: `${endpoint.url}/hooks/sidekick` });
    endpoint.handle(() => ({ json: { ok: true } }));
    const runner = runnerFor(bed.runtime());
    await converse(bed.runtime(), A(), ['Is my chain worn?'], { userId: randomUUID() });
    await runner.drain();
    expect(endpoint.requests).toHaveLength(1);
    expect(JSON.parse(endpoint.requests[0]!.body)).not.toHaveProperty('transcript');

    const env = bed.env;
    const listed = json<{ deliveries: Array<{ id: string; status: string; result: unknown }> }>(
      await sidekick(['webhooks', 'list', '--client', A().clientId, '--json'], env),
    );
    expect(listed.deliveries).toEqual([
      expect.objectContaining({ status: 'done', result: expect.objectContaining({ status: 200 }) }),
    ]);
    const text = await sidekick(['webhooks', 'list', '--client', A().clientId], env);
    expect(text.stdout).toContain('delivered: HTTP 200');
    // Every kind of after-session work, with its outcome and never its payload.
    const work = json<{ items: Array<Record<string, unknown>> }>(
      await sidekick(['work', 'list', '--client', A().clientId, '--json'], env),
    );
    expect(work.items.map((i) => [i.kind, i.status]).sort()).toEqual([
      ['post_session', 'done'],
      ['webhook', 'done'],
    ]);
    for (const i of work.items) expect(i).not.toHaveProperty('payload');

    const redo = await sidekick(
      ['webhooks', 'redeliver', '--client', A().clientId, '--id', listed.deliveries[0]!.id],
      env,
    );
    expect(redo.code).toBe(0);
    expect(redo.stdout).toMatch(/^queued delivery [0-9a-f-]{36} \(again of /);
    await runner.drain();
    expect(endpoint.requests).toHaveLength(2);
    const [first, second] = endpoint.requests.map((r) => JSON.parse(r.body) as SessionReport);
    expect(second!.event_id).not.toBe(first!.event_id);
    expect({ ...second, event_id: '' }).toEqual({ ...first, event_id: '' });

    // Another client's delivery is not this client's to redeliver.
    const other = await sidekick(
      ['webhooks', 'redeliver', '--client', B().clientId, '--id', listed.deliveries[0]!.id],
      env,
    );
    expect(other.code).toBe(2);
    expect(other.stderr).toContain(`--id: client ${B().clientId} has no webhook delivery`);
  });

  it.each([
    ['a private address', 'http://10.20.30.40:8080/hook', 'private'],
    ['the cloud metadata address', 'http://169.254.169.254/latest/meta-data', 'metadata'],
  ])(
    '%s is refused before anything is sent, and the delivery given up with the reason',
    async (_what, url, range) => {
      const tripwire = installLoopbackOnlyTripwire();
      try {
        await setSettings(bed.stack, B().clientId, { webhook_url: url });
        const runner = runnerFor(bed.runtime());
        await converse(bed.runtime(), B(), ['When should I repot my monstera?'], { userId: randomUUID() });
        await runner.drain();
        const [hook] = await deliveries(B().clientId);
        expect(hook).toMatchObject({ status: 'failed', attempts: 1 });
        expect(hook!.last_error).toContain('refused');
        expect(hook!.last_error).toContain(range);
        expect(tripwire.attempts).toEqual([]);
      } finally {
        tripwire.uninstall();
      }
    },
  );
});
