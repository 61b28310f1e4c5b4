import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LocalProject } from '../src/stack/project.js';
import type { LocalStack } from '../src/stack/stack.js';
import { createSupabase } from '../src/tenancy/supabase.js';
import { WorkQueue } from '../src/work/queue.js';
import { json, sidekick, stackEnv } from './support/cli.js';
import { startTestStack } from './support/stack.js';

/** `users forget --json` (keys snake_case, as every `--json`). */
interface ErasureJson {
  client_id: string;
  user_id: string;
  deleted: boolean;
  removes: { conversations: number; transcripts: number; overviews: number; work_items: number };
}

/** `users show --json`. */
interface UserRecordJson {
  client_id: string;
  user_id: string;
  overviews: Array<{ sidekick: string | null; sections: Record<string, unknown>; updated_at: string | null }>;
  conversations: { count: number; first: string | null; last: string | null };
  transcripts: { count: number; first: string | null; last: string | null };
  work: Array<{ kind: string; status: string; count: number }>;
}

/**
 * "Forget me": `sidekick users forget` leaves nothing of that user in that client's database (pool
 * or dedicated project) nor in the platform's queue, and everything of every other user and client;
 * `users show` says what is kept.
 */

let stack: LocalStack;
const U = randomUUID(); // the user who asks to be forgotten
const OTHER = randomUUID(); // another user of the same client
const DAY = 86_400_000;

beforeAll(async () => {
  stack = await startTestStack();
});
afterAll(async () => {
  await stack?.stop();
});

const A = () => stack.demo!.adventurers[0]!;
const B = () => stack.demo!.adventurers[1]!;
const C = () => stack.demo!.champion;
const env = () => stackEnv(stack);

/** Two conversations of `user` with `client`'s sidekick (two turns each), and their overviews. */
async function history(db: LocalProject, client: { clientId?: string; agentId: string }, user: string) {
  const tag = client.clientId ? 'client_id, ' : '';
  const prefix = client.clientId ? `'${client.clientId}', ` : '';
  const val = (n: number) => `${prefix}$${n}`;
  for (const daysAgo of [3, 1]) {
    const at = new Date(Date.now() - daysAgo * DAY).toISOString();
    const [conv] = await db.sql.query<{ id: string }>(
      `INSERT INTO conversations (${tag}agent_id, user_id, created_at) VALUES (${val(1)}, $2, $3) RETURNING id`,
      [client.agentId, user, at],
    );
    for (const role of ['user', 'assistant']) {
      await db.sql.query(
        `INSERT INTO conversation_transcripts (${tag}conversation_id, agent_id, user_id, role, content, created_at)
         VALUES (${val(1)}, $2, $3, $4, 'what was said', $5)`,
        [conv!.id, client.agentId, user, role, at],
      );
    }
    // A turn without a user id in the user's conversation (another writer's): it goes with it.
    await db.sql.query(
      `INSERT INTO conversation_transcripts (${tag}conversation_id, agent_id, role, content, created_at)
       VALUES (${val(1)}, $2, 'system', 'note', $3)`,
      [conv!.id, client.agentId, at],
    );
  }
  await db.sql.query(
    `INSERT INTO user_overviews (${tag}user_id, agent_id, sections) VALUES (${val(1)}, $2, '{"bike": "gravel"}')`,
    [user, client.agentId],
  );
  await db.sql.query(
    `INSERT INTO user_overviews (${tag}user_id, agent_id, sections) VALUES (${val(1)}, NULL, '{"name": "Sam"}')`,
    [user],
  );
}

/** Every row of the tables a user's data lives in, hashed, except `user`'s of `client` in `db`. */
async function everythingBut(db: LocalProject, user: string) {
  const rows = await db.sql.query<{ h: string }>(
    `SELECT 'c' || md5(c::text) AS h FROM conversations c WHERE user_id IS DISTINCT FROM $1
     UNION ALL SELECT 't' || md5(t::text) FROM conversation_transcripts t
      WHERE user_id IS DISTINCT FROM $1
        AND conversation_id NOT IN (SELECT id FROM conversations WHERE user_id = $1)
     UNION ALL SELECT 'o' || md5(o::text) FROM user_overviews o WHERE user_id <> $1
     ORDER BY 1`,
    [user],
  );
  return rows.map((r) => r.h);
}

async function leftOf(db: LocalProject, user: string, clientId?: string) {
  const scope = clientId ? `AND client_id = '${clientId}'` : '';
  const [r] = await db.sql.query<{ n: number }>(
    `SELECT (SELECT count(*) FROM conversations WHERE user_id = $1 ${scope})
          + (SELECT count(*) FROM conversation_transcripts WHERE (user_id = $1
               OR conversation_id IN (SELECT id FROM conversations WHERE user_id = $1)) ${scope})
          + (SELECT count(*) FROM user_overviews WHERE user_id = $1 ${scope}) AS n`,
    [user],
  );
  return Number(r!.n);
}

describe('users show and users forget', () => {
  it('in the pool: show says what is kept; forget leaves nothing of the user and everything else', async () => {
    // The same user id at two clients of the pool: erasure at A must not touch B's.
    await history(stack.pool, A(), U);
    await history(stack.pool, A(), OTHER);
    await history(stack.pool, B(), U);
    const queue = new WorkQueue(createSupabase(stack.platform.url, stack.platform.serviceRoleKey), 'test');
    for (const [client, user] of [
      [A().clientId, U],
      [A().clientId, OTHER],
      [B().clientId, U],
    ] as const) {
      await queue.enqueue({
        kind: 'post_session',
        clientId: client,
        payload: { client_id: client, user_id: user },
      });
      await queue.enqueue({
        kind: 'webhook',
        clientId: client,
        payload: { client_id: client, user_id: user },
      });
    }

    const shown = json<UserRecordJson>(
      await sidekick(['users', 'show', '--client', A().clientId, '--user', U, '--json'], env()),
    );
    expect(shown.conversations.count).toBe(2);
    expect(shown.transcripts.count).toBe(4);
    expect(Date.parse(shown.conversations.first!)).toBeLessThan(Date.parse(shown.conversations.last!));
    expect(shown.overviews).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ sidekick: A().agentSlug, sections: { bike: 'gravel' } }),
        expect.objectContaining({ sidekick: null, sections: { name: 'Sam' } }),
      ]),
    );
    expect(shown.work).toEqual(
      expect.arrayContaining([
        { kind: 'post_session', status: 'pending', count: 1 },
        { kind: 'webhook', status: 'pending', count: 1 },
      ]),
    );
    const text = await sidekick(['users', 'show', '--client', A().clientId, '--user', U], env());
    expect(text.stdout).toContain(`overview      of sidekick ${A().agentSlug}`);
    expect(text.stdout).toContain('  bike: gravel');

    const othersBefore = await everythingBut(stack.pool, U);
    const bBefore = await leftOf(stack.pool, U, B().clientId);
    const counts = { conversations: 2, transcripts: 6, overviews: 2, work_items: 2 };
    // Without --yes: what would go, exit 2, and nothing goes (like clients delete and agents delete).
    const dry = await sidekick(['users', 'forget', '--client', A().clientId, '--user', U], env());
    expect(dry.code).toBe(2);
    expect(dry.stdout).toBe(
      `would forget user ${U} of client ${A().clientId}: 2 conversations, 6 turns, 2 overviews, 2 work items\n`,
    );
    expect(dry.stderr).toMatch(/--yes: nothing was deleted; run again with --yes to delete the data of user/);
    const dryJson = await sidekick(
      ['users', 'forget', '--client', A().clientId, '--user', U, '--json'],
      env(),
    );
    expect(dryJson.code).toBe(2);
    expect(json<ErasureJson>(dryJson)).toEqual({
      client_id: A().clientId,
      user_id: U,
      deleted: false,
      removes: counts,
    });
    expect(await leftOf(stack.pool, U, A().clientId)).toBeGreaterThan(0);

    const run = await sidekick(
      ['users', 'forget', '--client', A().clientId, '--user', U, '--yes', '--json'],
      env(),
    );
    expect(run.code).toBe(0);
    expect(json<ErasureJson>(run)).toMatchObject({ deleted: true, removes: counts });

    expect(await leftOf(stack.pool, U, A().clientId)).toBe(0);
    expect(await leftOf(stack.pool, U, B().clientId)).toBe(bBefore);
    expect(await everythingBut(stack.pool, U)).toEqual(othersBefore);
    const work = await stack.platform.sql.query<{ client_id: string; user: string }>(
      `SELECT client_id::text, payload->>'user_id' AS user FROM work_items ORDER BY 1, 2`,
    );
    expect(work).toHaveLength(4);
    expect(work.filter((w) => w.client_id === A().clientId && w.user === U)).toEqual([]);

    // Again, even without --yes (nothing left to lose): nothing left to forget, and show says so.
    const again = json<ErasureJson>(
      await sidekick(['users', 'forget', '--client', A().clientId, '--user', U, '--json'], env()),
    );
    expect(again).toMatchObject({
      deleted: true,
      removes: { conversations: 0, transcripts: 0, overviews: 0, work_items: 0 },
    });
    const after = json<UserRecordJson>(
      await sidekick(['users', 'show', '--client', A().clientId, '--user', U, '--json'], env()),
    );
    expect(after).toMatchObject({
      overviews: [],
      conversations: { count: 0 },
      transcripts: { count: 0 },
      work: [],
    });
  });

  it('in a dedicated project: the same, in the client’s own database', async () => {
    await history(stack.dedicated, { agentId: C().agentId }, U);
    await history(stack.dedicated, { agentId: C().agentId }, OTHER);
    const othersBefore = await everythingBut(stack.dedicated, U);
    const run = await sidekick(['users', 'forget', '--client', C().clientId, '--user', U, '--yes'], env());
    expect(run.code).toBe(0);
    expect(run.stdout).toBe(
      `forgot user ${U} of client ${C().clientId}: 2 conversations, 6 turns, 2 overviews, 0 work items deleted\n`,
    );
    expect(await leftOf(stack.dedicated, U)).toBe(0);
    expect(await everythingBut(stack.dedicated, U)).toEqual(othersBefore);
  });

  it('bad input names the option', async () => {
    const run = await sidekick(['users', 'forget', '--client', A().clientId, '--user', 'sam'], env());
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("option '--user <id>' argument 'sam' is invalid. expected a uuid");
  });
});
