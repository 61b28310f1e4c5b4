import type { Command } from 'commander';
import {
  checkSpec,
  createSidekick,
  deleteSidekick,
  listSidekicks,
  readSpecFile,
  type SidekickDeletion,
  type SidekickDetails,
  type SidekickListing,
  type SidekickResult,
  type SidekickSpec,
  showSidekick,
  updateSidekick,
} from '../ops/sidekicks.js';
import {
  type CommandContext,
  confirmationNeeded,
  parseJsonObject,
  parseSidekick,
  parseUuid,
  plural,
} from './shared.js';
import { toolsCommands } from './tools.js';

interface SpecFlags {
  file?: string;
  name?: string;
  slug?: string;
  systemPrompt?: string;
  greeting?: string;
  voice?: string;
  voiceSettings?: Record<string, unknown>;
  voiceChat?: boolean;
  textChat?: boolean;
  videoChat?: boolean;
}

/** `sidekick agents ...`: a client's sidekicks. */
export function agentCommands(program: Command, ctx: CommandContext): void {
  const agents = program
    .command('agents')
    .description("create, change, show, list and delete a client's sidekicks, and their tools");

  specOptions(
    agents
      .command('create')
      .description(
        "a new sidekick for the client, within its tier's sidekick limit (fields from flags, or a JSON/YAML --file; flags win)",
      )
      .requiredOption('--client <id>', 'client id', parseUuid),
  )
    .option('--json', 'print the result as JSON')
    .action(async (o: SpecFlags & { client: string; json?: boolean }) => {
      const spec = await specFrom(o);
      const result = await createSidekick(
        { connections: ctx.operations().worker().connections },
        { clientId: o.client, spec },
      );
      if (o.json) return ctx.json(sidekickJson(result));
      for (const line of formatSidekick('created', result)) ctx.out(line);
    });

  specOptions(
    agents
      .command('update')
      .description('change the given fields of a sidekick (the others stay as they are)')
      .requiredOption('--client <id>', 'client id', parseUuid)
      .requiredOption('--agent <slug>', 'the sidekick (slug or id)', parseSidekick),
  )
    .option('--json', 'print the result as JSON')
    .action(async (o: SpecFlags & { client: string; agent: string; json?: boolean }) => {
      const { voice, ...rest } = o;
      const patch = await specFrom(rest);
      const result = await updateSidekick(
        { connections: ctx.operations().worker().connections },
        { clientId: o.client, agent: o.agent, patch, voice },
      );
      if (o.json) return ctx.json(sidekickJson(result));
      for (const line of formatSidekick('updated', result)) ctx.out(line);
    });

  agents
    .command('show')
    .description('a sidekick: its settings, what its sessions may do, its documents and conversations')
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)', parseSidekick)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; agent: string; json?: boolean }) => {
      const d = await showSidekick(
        { connections: ctx.operations().worker().connections },
        { clientId: o.client, agent: o.agent },
      );
      if (o.json) {
        return ctx.json({
          ...sidekickJson(d),
          documents: d.documents,
          conversations: d.conversations,
          transcripts: d.transcripts,
        });
      }
      for (const line of formatDetails(d)) ctx.out(line);
    });

  agents
    .command('list')
    .description("the client's sidekicks, oldest first (the order its sidekick limit keeps)")
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const result = await listSidekicks(
        { connections: ctx.operations().worker().connections },
        { clientId: o.client },
      );
      if (o.json) {
        return ctx.json({
          client_id: result.clientId,
          max_sidekicks: result.maxSidekicks,
          sidekicks: result.sidekicks.map((s) => ({
            ...s.sidekick,
            documents: s.documents,
            beyond_limit: s.beyondLimit,
          })),
        });
      }
      if (!result.sidekicks.length) {
        return ctx.out(
          `no sidekicks: \`sidekick agents create --client ${result.clientId} --name NAME\` makes one`,
        );
      }
      for (const s of result.sidekicks) ctx.out(formatListing(s));
    });

  agents
    .command('delete')
    .description(
      'delete a sidekick with its document links, conversations, transcripts and user overviews; without --yes, only shows what would go',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)', parseSidekick)
    .option('--with-documents', 'also delete the documents no other sidekick uses')
    .option('--yes', 'really delete')
    .option('--json', 'print the result as JSON')
    .action(
      async (o: {
        client: string;
        agent: string;
        withDocuments?: boolean;
        yes?: boolean;
        json?: boolean;
      }) => {
        const result = await deleteSidekick(
          { connections: ctx.operations().worker().connections },
          { clientId: o.client, agent: o.agent, yes: o.yes === true, withDocuments: o.withDocuments },
        );
        if (o.json) ctx.json(deletionJson(result));
        else for (const line of formatDeletion(result, o.withDocuments === true)) ctx.out(line);
        if (!result.deleted) confirmationNeeded(`sidekick "${result.sidekick.slug}"`);
      },
    );
  toolsCommands(agents, ctx);
}

function specOptions(cmd: Command): Command {
  return cmd
    .option('--file <path>', 'the fields from a JSON or YAML file (the keys of `agents show --json`)')
    .option('--name <name>', "the sidekick's name")
    .option('--slug <slug>', 'what job metadata names it by (default: made from the name)')
    .option('--system-prompt <text>', 'its instructions')
    .option('--greeting <text>', 'what it says first')
    .option(
      '--voice <name>',
      'its TTS voice (voice_settings.voice; used where the tier allows custom voices)',
    )
    .option('--voice-settings <json>', 'voice_settings as a JSON object (replaces it)', parseJsonObject)
    .option('--voice-chat', 'switch voice chat on (default on)')
    .option('--no-voice-chat', 'switch voice chat off')
    .option('--text-chat', 'switch text chat on (default on)')
    .option('--no-text-chat', 'switch text chat off')
    .option('--video-chat', 'switch video chat on (default off; needs a tier with video)')
    .option('--no-video-chat', 'switch video chat off');
}

/** The file's fields, with the flags given on top (flags win). */
async function specFrom(o: SpecFlags): Promise<SidekickSpec> {
  const fromFile = o.file ? await readSpecFile(o.file) : {};
  const flags: Record<string, unknown> = {
    name: o.name,
    slug: o.slug,
    system_prompt: o.systemPrompt,
    greeting: o.greeting,
    voice_settings: o.voiceSettings,
    voice_chat_enabled: o.voiceChat,
    text_chat_enabled: o.textChat,
    video_chat_enabled: o.videoChat,
  };
  for (const k of Object.keys(flags)) if (flags[k] === undefined) delete flags[k];
  const spec: SidekickSpec = { ...fromFile, ...checkSpec(flags, 'flags') };
  if (o.voice !== undefined) spec.voice_settings = { ...(spec.voice_settings ?? {}), voice: o.voice };
  return spec;
}

function sidekickJson(r: SidekickResult) {
  const decision = (d: { enabled: boolean; reason: string }) => ({ enabled: d.enabled, reason: d.reason });
  return {
    client_id: r.clientId,
    sidekick: r.sidekick,
    sessions: {
      voice_chat: decision(r.channels.audio),
      text_chat: decision(r.channels.text),
      video_chat: decision(r.channels.video),
      document_retrieval: decision(r.channels.rag),
      voice: r.channels.voice,
    },
    notes: r.notes,
  };
}

export function formatSidekick(verb: string, r: SidekickResult): string[] {
  const s = r.sidekick;
  const onOff = (d: { enabled: boolean; reason: string }) => `${d.enabled ? 'on ' : 'off'}  ${d.reason}`;
  return [
    `${verb ? `${verb} ` : ''}sidekick ${s.slug} "${s.name}" (id ${s.id}) of client ${r.clientId}`,
    `  voice chat   ${onOff(r.channels.audio)}`,
    `  text chat    ${onOff(r.channels.text)}`,
    `  video chat   ${onOff(r.channels.video)}`,
    `  documents    ${onOff(r.channels.rag)}`,
    `  voice        ${r.channels.voice.name ?? 'the default'} (${r.channels.voice.reason})`,
    ...r.notes.map((n) => `note: ${n}`),
  ];
}

export function formatDetails(d: SidekickDetails): string[] {
  const s = d.sidekick;
  const lines = formatSidekick('', d);
  lines.splice(
    1,
    0,
    `  prompt       ${s.system_prompt ? oneLine(s.system_prompt, 100) : '(none: a default)'}`,
    `  greeting     ${s.greeting ? oneLine(s.greeting, 100) : '(none)'}`,
  );
  lines.push(
    `  talked       ${plural(d.conversations, 'conversation')}, ${plural(d.transcripts, 'transcript row')}`,
  );
  lines.push(`  documents    ${d.documents.length}`);
  for (const doc of d.documents) {
    lines.push(
      `    ${doc.id}  ${(doc.status ?? '').padEnd(10)} ${doc.title ?? ''}${doc.enabled ? '' : ' (link disabled)'}`,
    );
  }
  return lines;
}

export function formatListing(l: SidekickListing): string {
  const s = l.sidekick;
  const channels = [
    s.voice_chat_enabled ? 'voice' : null,
    s.text_chat_enabled ? 'text' : null,
    s.video_chat_enabled ? 'video' : null,
  ].filter(Boolean);
  return `${s.id}  ${s.slug.padEnd(24)} ${plural(l.documents, 'doc').padStart(9)}  ${channels.join('+').padEnd(16)} ${s.name}${l.beyondLimit ? '  (beyond max_sidekicks: sessions refused)' : ''}`;
}

function deletionJson(d: SidekickDeletion) {
  return {
    client_id: d.clientId,
    sidekick: d.sidekick,
    deleted: d.deleted,
    removes: {
      document_links: d.documentLinks,
      conversations: d.conversations,
      transcripts: d.transcripts,
      user_overviews: d.userOverviews,
    },
    documents_only_here: d.documentsOnlyHere,
    documents_deleted: d.documentsDeleted,
  };
}

export function formatDeletion(d: SidekickDeletion, withDocuments: boolean): string[] {
  const s = d.sidekick;
  const head = d.deleted
    ? `deleted sidekick ${s.slug} "${s.name}" of client ${d.clientId}, with:`
    : `would delete sidekick ${s.slug} "${s.name}" of client ${d.clientId}, with:`;
  const lines = [
    head,
    `  ${plural(d.documentLinks, 'document link')}`,
    `  ${plural(d.conversations, 'conversation')} and their ${plural(d.transcripts, 'transcript row')}`,
    `  ${plural(d.userOverviews, 'user overview')} of this sidekick`,
  ];
  const only = d.documentsOnlyHere.length;
  if (withDocuments) {
    const n = d.deleted ? d.documentsDeleted : only;
    lines.push(`  ${plural(n, 'document')} no other sidekick uses`);
  } else if (only) {
    lines.push(
      `${plural(only, 'document')} no other sidekick uses ${only === 1 ? 'is' : 'are'} kept (they count against max_documents): add --with-documents to delete them too, or \`sidekick docs remove\` them later`,
    );
  }
  return lines;
}

function oneLine(text: string, max: number): string {
  const flat = text.replace(/\s+/g, ' ').trim();
  return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}
