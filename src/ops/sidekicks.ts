import { readFile } from 'node:fs/promises';
import { extname } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { NoChannelAllowedError } from '../agent/errors.js';
import { decideSession, type SessionPlan } from '../agent/session-plan.js';
import type { ClientConnection } from '../tenancy/connections.js';
import {
  describeRef,
  SIDEKICK_COLUMNS,
  SIDEKICK_SLUG,
  SIDEKICK_SLUG_RULE,
  type SidekickRow,
  sidekickRef,
} from '../tenancy/sidekicks.js';
import type { TenantQuery, TenantTable } from '../tenancy/tenant-query.js';
import { dbError, LimitError, must, UsageError } from './errors.js';
import { countTenantRows, tenantRows } from './tables.js';
import { connectClient, sidekickArg, type TenantDeps } from './tenant.js';

/**
 * `sidekick agents ...`: a client's sidekicks (`agents` rows), created, changed, shown and deleted
 * through the client's own connection (TenantQuery: the tenant token in the pool, the project's key
 * in a dedicated database), exactly as sessions read them.
 */

export type SidekickDeps = TenantDeps;

/**
 * What an operator may set on a sidekick, by the `agents` columns' own names (so `agents show
 * --json` output edits back into `agents update --file`). Unknown keys are refused, naming them: a
 * typo in a file must not be silently dropped.
 */
export const sidekickSpecSchema = z
  .object({
    name: z.string().trim().min(1, 'must not be empty').max(200, 'at most 200 characters'),
    slug: z.string().regex(SIDEKICK_SLUG, `must be a slug: ${SIDEKICK_SLUG_RULE}`),
    system_prompt: z.string().nullable(),
    greeting: z.string().nullable(),
    voice_settings: z.record(z.string(), z.unknown()),
    voice_chat_enabled: z.boolean(),
    text_chat_enabled: z.boolean(),
    video_chat_enabled: z.boolean(),
    /**
     * Accepted so that `agents show --json` output edits back; it must be unchanged: tools are
     * changed with `agents tools add|remove`, where the tier's limits are checked.
     */
    tools_config: z.unknown(),
  })
  .partial()
  .strict();
export type SidekickSpec = z.infer<typeof sidekickSpecSchema>;

/** The flag each field is set by, for messages that name what the operator typed. */
export const SPEC_FLAGS: Readonly<Record<Exclude<keyof SidekickSpec, 'tools_config'>, string>> =
  Object.freeze({
    name: '--name',
    slug: '--slug',
    system_prompt: '--system-prompt',
    greeting: '--greeting',
    voice_settings: '--voice-settings',
    voice_chat_enabled: '--voice-chat',
    text_chat_enabled: '--text-chat',
    video_chat_enabled: '--video-chat',
  });

/** Checks a spec (from flags, a file, or both merged); `source` names where it came from. */
export function checkSpec(value: unknown, source: string): SidekickSpec {
  const parsed = sidekickSpecSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  const problems = parsed.error.issues.map((i) => {
    if (i.code === 'unrecognized_keys') {
      return `unknown field${i.keys.length > 1 ? 's' : ''} ${i.keys.join(', ')} (known: ${Object.keys(SPEC_FLAGS).join(', ')})`;
    }
    const field = String(i.path[0] ?? '');
    const flag = SPEC_FLAGS[field as keyof typeof SPEC_FLAGS];
    return `${field}${flag && source === 'flags' ? ` (${flag})` : ''}: ${i.message}`;
  });
  throw new UsageError(`${source}: ${problems.join('; ')}`);
}

/**
 * A sidekick file: JSON (.json) or YAML (anything else; YAML is a superset of JSON), one object
 * with the fields of sidekickSpecSchema.
 */
export async function readSpecFile(file: string): Promise<SidekickSpec> {
  const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
    throw new UsageError(`--file ${file}: ${err.code === 'ENOENT' ? 'no such file' : err.message}`);
  });
  let doc: unknown;
  try {
    doc = extname(file).toLowerCase() === '.json' ? JSON.parse(text) : parseYaml(text);
  } catch (err) {
    const kind = extname(file).toLowerCase() === '.json' ? 'JSON' : 'YAML';
    throw new UsageError(`--file ${file}: not valid ${kind}: ${(err as Error).message.split('\n')[0]}`);
  }
  if (!doc || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new UsageError(`--file ${file}: expected one object with the sidekick's fields (name, slug, ...)`);
  }
  // `agents show --json` output, edited: its sidekick, without what the database keeps itself.
  const wrapped = (doc as Record<string, unknown>).sidekick;
  const fields = { ...(wrapped && typeof wrapped === 'object' ? wrapped : doc) } as Record<string, unknown>;
  for (const key of READ_ONLY) delete fields[key];
  const tools = fields.tools_config;
  if (tools === null || (typeof tools === 'object' && !Array.isArray(tools) && !Object.keys(tools).length))
    delete fields.tools_config;
  return checkSpec(fields, `--file ${file}`);
}

/** Columns `agents show --json` prints that a file may carry but not change. */
const READ_ONLY = ['id', 'client_id', 'created_at', 'updated_at'] as const;

/** A slug made from a name: lower case, words joined by "-" ("Acme Bike Guide" -> "acme-bike-guide"). */
export function slugFromName(name: string): string {
  return name
    .normalize('NFKD')
    .replace(/\p{M}/gu, '')
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 100)
    .replace(/-+$/, '');
}

export interface SidekickResult {
  clientId: string;
  sidekick: SidekickRow;
  /** What sessions of this sidekick may do: its switches AND the client's tier (decideSession). */
  channels: Pick<SessionPlan, 'audio' | 'text' | 'video' | 'rag' | 'voice'>;
  /** Things the operator asked for that the tier will not give (the row keeps them). */
  notes: string[];
}

/** `agents create`: a new sidekick, within the client's sidekick limit. */
export async function createSidekick(
  deps: SidekickDeps,
  opts: { clientId: string; spec: SidekickSpec },
): Promise<SidekickResult> {
  const conn = await connectClient(deps, opts.clientId);
  const { tools_config: tools, ...spec } = opts.spec;
  if (tools !== undefined) throw toolsByCommand();
  if (!spec.name) throw new UsageError('--name: a sidekick needs a name');
  spec.slug ??= slugFromName(spec.name);
  if (!SIDEKICK_SLUG.test(spec.slug)) {
    throw new UsageError(
      `--slug: no slug can be made from the name "${spec.name}"; give one (${SIDEKICK_SLUG_RULE})`,
    );
  }
  const row: SidekickRow = {
    id: '',
    name: spec.name,
    slug: spec.slug,
    system_prompt: spec.system_prompt ?? null,
    greeting: spec.greeting ?? null,
    voice_settings: spec.voice_settings ?? {},
    voice_chat_enabled: spec.voice_chat_enabled ?? true,
    text_chat_enabled: spec.text_chat_enabled ?? true,
    video_chat_enabled: spec.video_chat_enabled ?? false,
    tools_config: null,
  };
  const channels = channelsOf(conn, row);
  const max = conn.features.max_sidekicks;
  // The pool enforces its limit itself (a trigger that concurrent inserts cannot pass). A dedicated
  // project has no such trigger: there the limit (only ever an override) is counted here.
  if (!conn.db.isShared && max !== null) {
    const have = await countWhere(conn.db, 'agents');
    if (have >= max)
      throw sidekickLimit(
        conn,
        `client ${conn.clientId} may have at most ${max} sidekick(s) and has ${have}`,
      );
  }
  const { id: _none, tools_config: _tools, ...values } = row;
  const res = await conn.db.from('agents').insert(values).select(SIDEKICK_COLUMNS).single();
  if (res.error) {
    if (res.error.code === '23514' && /sidekick limit/.test(res.error.message)) {
      // The trigger's own message; its hint says what sidekickLimit adds.
      throw sidekickLimit(conn, res.error.message);
    }
    if (res.error.code === '23505') throw slugTaken(conn.clientId, row.slug);
    throw dbError(`creating sidekick "${row.slug}" of client ${conn.clientId}`, res.error);
  }
  const created = res.data as unknown as SidekickRow;
  return { clientId: conn.clientId, sidekick: created, channels, notes: notesFor(conn, spec) };
}

/** `agents update`: changes the given fields only. */
export async function updateSidekick(
  deps: SidekickDeps,
  opts: { clientId: string; agent: string; patch: SidekickSpec; voice?: string | undefined },
): Promise<SidekickResult> {
  const conn = await connectClient(deps, opts.clientId);
  const current = await sidekickArg(conn.db, opts.agent);
  const { tools_config: tools, ...patch }: SidekickSpec = { ...opts.patch };
  if (tools !== undefined && !isDeepStrictEqual(tools, current.tools_config)) throw toolsByCommand();
  if (opts.voice !== undefined) {
    patch.voice_settings = { ...(patch.voice_settings ?? current.voice_settings ?? {}), voice: opts.voice };
  }
  if (Object.keys(patch).length === 0) {
    throw new UsageError(
      `nothing to change: give at least one of ${Object.values(SPEC_FLAGS).join(', ')}, --voice or --file`,
    );
  }
  const channels = channelsOf(conn, { ...current, ...patch });
  const res = await conn.db
    .from('agents')
    .update(patch)
    .eq('id', current.id)
    .select(SIDEKICK_COLUMNS)
    .maybeSingle();
  if (res.error) {
    if (res.error.code === '23505') throw slugTaken(conn.clientId, patch.slug ?? current.slug);
    throw dbError(`updating sidekick "${current.slug}" of client ${conn.clientId}`, res.error);
  }
  if (!res.data) throw notFound(conn.clientId, opts.agent);
  const notes = notesFor(conn, patch);
  if (patch.slug && patch.slug !== current.slug) {
    notes.push(
      `the slug changed from "${current.slug}" to "${patch.slug}": dispatches must send agent_slug "${patch.slug}" from now on`,
    );
  }
  return { clientId: conn.clientId, sidekick: res.data as unknown as SidekickRow, channels, notes };
}

export interface SidekickListing {
  sidekick: SidekickRow & { created_at: string | null };
  documents: number;
  /** Beyond the client's max_sidekicks (its oldest ones stay usable): sessions are refused. */
  beyondLimit: boolean;
}

/** `agents list`: every sidekick of the client, oldest first (the order the sidekick limit keeps). */
export async function listSidekicks(
  deps: SidekickDeps,
  opts: { clientId: string },
): Promise<{ clientId: string; maxSidekicks: number | null; sidekicks: SidekickListing[] }> {
  const conn = await connectClient(deps, opts.clientId);
  const all: Array<SidekickRow & { created_at: string | null }> = [];
  for await (const r of tenantRows(conn.db, 'agents', `${SIDEKICK_COLUMNS}, created_at`)) {
    all.push(r as unknown as SidekickRow & { created_at: string | null });
  }
  all.sort((a, b) => (a.created_at ?? '').localeCompare(b.created_at ?? '') || a.id.localeCompare(b.id));
  const perAgent = new Map<string, number>();
  for await (const link of tenantRows(conn.db, 'agent_documents', 'id, agent_id')) {
    const id = String(link.agent_id);
    perAgent.set(id, (perAgent.get(id) ?? 0) + 1);
  }
  const max = conn.features.max_sidekicks;
  return {
    clientId: conn.clientId,
    maxSidekicks: max,
    sidekicks: all.map((s, i) => ({
      sidekick: s,
      documents: perAgent.get(s.id) ?? 0,
      beyondLimit: max !== null && i >= max,
    })),
  };
}

export interface SidekickDetails extends SidekickResult {
  documents: Array<{ id: string; title: string | null; status: string | null; enabled: boolean }>;
  conversations: number;
  transcripts: number;
}

/** `agents show`: the sidekick, what its sessions may do, its documents and how much it has talked. */
export async function showSidekick(
  deps: SidekickDeps,
  opts: { clientId: string; agent: string },
): Promise<SidekickDetails> {
  const conn = await connectClient(deps, opts.clientId);
  const s = await sidekickArg(conn.db, opts.agent);
  const links: Array<{ document_id: string; enabled: boolean }> = [];
  for await (const l of tenantRows(conn.db, 'agent_documents', 'id, document_id, enabled', (b) =>
    b.eq('agent_id', s.id),
  )) {
    links.push({ document_id: String(l.document_id), enabled: l.enabled !== false });
  }
  const titles = new Map<string, { title: string | null; status: string | null }>();
  for (let i = 0; i < links.length; i += 100) {
    const ids = links.slice(i, i + 100).map((l) => l.document_id);
    const found = must(
      "reading the sidekick's documents",
      await conn.db.from('documents').select('id, title, status').in('id', ids),
    );
    for (const d of found ?? []) {
      titles.set(String(d.id), {
        title: (d.title as string | null) ?? null,
        status: (d.status as string | null) ?? null,
      });
    }
  }
  const [conversations, transcripts] = await Promise.all([
    countWhere(conn.db, 'conversations', s.id),
    countWhere(conn.db, 'conversation_transcripts', s.id),
  ]);
  return {
    clientId: conn.clientId,
    sidekick: s,
    channels: channelsOf(conn, s, false),
    notes: notesFor(conn, s),
    documents: links.map((l) => ({
      id: l.document_id,
      enabled: l.enabled,
      ...(titles.get(l.document_id) ?? { title: null, status: null }),
    })),
    conversations,
    transcripts,
  };
}

/** What deleting a sidekick removes (the database's ON DELETE CASCADE rules, counted first). */
export interface SidekickDeletion {
  clientId: string;
  sidekick: { id: string; slug: string; name: string };
  /** Links to documents (agent_documents): removed with the sidekick. */
  documentLinks: number;
  /** Documents no other sidekick uses: kept unless `withDocuments` (they still count against max_documents). */
  documentsOnlyHere: string[];
  conversations: number;
  transcripts: number;
  userOverviews: number;
  /** False: only counted (no --yes). */
  deleted: boolean;
  documentsDeleted: number;
}

/**
 * `agents delete`: counts what goes (document links, conversations with their transcripts, user
 * overviews of this sidekick), and deletes only with `yes`. With `withDocuments`, the documents no
 * other sidekick uses go first (so a crash leaves the sidekick, and a re-run finishes the job).
 */
export async function deleteSidekick(
  deps: SidekickDeps,
  opts: { clientId: string; agent: string; yes: boolean; withDocuments?: boolean },
): Promise<SidekickDeletion> {
  const conn = await connectClient(deps, opts.clientId);
  const db = conn.db;
  const s = await sidekickArg(db, opts.agent);
  const docIds: string[] = [];
  for await (const l of tenantRows(db, 'agent_documents', 'id, document_id', (b) => b.eq('agent_id', s.id))) {
    docIds.push(String(l.document_id));
  }
  const shared = new Set<string>();
  for (let i = 0; i < docIds.length; i += 100) {
    const batch = docIds.slice(i, i + 100);
    const others = must(
      'looking for other sidekicks of the documents',
      await db.from('agent_documents').select('document_id').in('document_id', batch).neq('agent_id', s.id),
    );
    for (const o of others ?? []) shared.add(String(o.document_id));
  }
  const [conversations, transcripts, userOverviews] = await Promise.all([
    countWhere(db, 'conversations', s.id),
    countWhere(db, 'conversation_transcripts', s.id),
    countWhere(db, 'user_overviews', s.id),
  ]);
  const plan: SidekickDeletion = {
    clientId: conn.clientId,
    sidekick: { id: s.id, slug: s.slug, name: s.name },
    documentLinks: docIds.length,
    documentsOnlyHere: docIds.filter((d) => !shared.has(d)),
    conversations,
    transcripts,
    userOverviews,
    deleted: false,
    documentsDeleted: 0,
  };
  if (!opts.yes) return plan;
  if (opts.withDocuments) {
    const only = plan.documentsOnlyHere;
    for (let i = 0; i < only.length; i += 100) {
      must(
        `deleting the documents of sidekick "${s.slug}"`,
        await db
          .from('documents')
          .delete()
          .in('id', only.slice(i, i + 100)),
      );
    }
    plan.documentsDeleted = only.length;
  }
  must(
    `deleting sidekick "${s.slug}" of client ${conn.clientId}`,
    await db.from('agents').delete().eq('id', s.id),
  );
  plan.deleted = true;
  return plan;
}

function toolsByCommand(): UsageError {
  return new UsageError(
    'tools_config: a file may carry it only unchanged; tools are added and removed with `sidekick agents tools add|remove` (where the tier limits are checked)',
  );
}

function notFound(clientId: string, agent: string): UsageError {
  return new UsageError(
    `--agent: client ${clientId} has no sidekick with ${describeRef(sidekickRef(agent))} (\`sidekick agents list --client ${clientId}\` shows them)`,
  );
}

function slugTaken(clientId: string, slug: string): UsageError {
  return new UsageError(
    `--slug: client ${clientId} already has a sidekick with slug "${slug}": choose another slug, or change that one with \`sidekick agents update\``,
  );
}

function sidekickLimit(conn: ClientConnection, detail: string): LimitError {
  return new LimitError(
    'max_sidekicks',
    `refused by the limit max_sidekicks (${conn.tier} tier): ${detail}; delete a sidekick (\`sidekick agents delete\`) or upgrade the client (\`sidekick clients upgrade\`)`,
  );
}

/**
 * The session plan's own decision for this sidekick (its switches AND the client's features); a
 * sidekick that neither voice nor text may use would have every session refused. `strict`: refuse
 * to write such a sidekick.
 */
function channelsOf(
  conn: ClientConnection,
  s: Omit<SidekickRow, 'id'> & { id: string | null },
  strict = true,
) {
  try {
    const plan = decideSession({
      clientId: conn.clientId,
      tier: conn.tier,
      features: conn.features,
      overridden: conn.overridden,
      sidekick: s,
    });
    return { audio: plan.audio, text: plan.text, video: plan.video, rag: plan.rag, voice: plan.voice };
  } catch (err) {
    if (err instanceof NoChannelAllowedError && strict) {
      throw new UsageError(
        `--voice-chat / --text-chat: every session of this sidekick would be refused: ${err.message.split(': ').slice(1).join(': ')}`,
      );
    }
    if (err instanceof NoChannelAllowedError) {
      const off = { enabled: false, reason: err.message };
      return {
        audio: off,
        text: off,
        video: off,
        rag: off,
        voice: { name: null, custom: false, reason: err.message },
      };
    }
    throw err;
  }
}

/** What was asked for that the client's tier does not give (the setting is kept for a later upgrade). */
function notesFor(conn: ClientConnection, spec: SidekickSpec | SidekickRow): string[] {
  const notes: string[] = [];
  const f = conn.features;
  if (spec.video_chat_enabled === true && !f.video_chat_enabled)
    notes.push(
      `video chat is switched on, but the ${conn.tier} tier does not allow it: sessions run without video`,
    );
  if (spec.voice_chat_enabled === true && !f.voice_chat_enabled)
    notes.push(`voice chat is switched on, but the ${conn.tier} tier does not allow it`);
  if (typeof spec.voice_settings?.voice === 'string' && !f.custom_voice_enabled)
    notes.push(
      `the voice "${spec.voice_settings.voice}" is stored, but the ${conn.tier} tier has no custom voices: sessions use the default voice`,
    );
  return notes;
}

/** Rows of a tenant table (of one sidekick when `agentId` is given), counted by the database. */
function countWhere(db: TenantQuery, table: TenantTable, agentId?: string): Promise<number> {
  return countTenantRows(db, table, agentId ? (b) => b.eq('agent_id', agentId) : undefined);
}
