import { type Command, Option } from 'commander';
import { TEXT_ENCODINGS, type TextEncoding } from '../ops/document-files.js';
import { type DocumentDetails, removeDocuments, showDocument } from '../ops/documents.js';
import {
  type DocumentListing,
  type IngestedDocument,
  ingestDocuments,
  listDocuments,
} from '../ops/ingest.js';
import { type ReembedOptions, type ReembedResult, reembedDocuments } from '../ops/reembed.js';
import { type CommandContext, oneOf, parseCount, parseSidekick, parseUuid, plural } from './shared.js';

/** `sidekick docs ...`: a sidekick's documents. */
export function docsCommands(program: Command, ctx: CommandContext): void {
  const docs = program
    .command('docs')
    .description("load, replace, show, remove and re-embed a sidekick's documents");

  docs
    .command('add')
    .description(
      "load .txt, .md or .pdf files (or text/PDF files without an extension) into a sidekick's knowledge base; a file named like one of its documents replaces it",
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)', parseSidekick)
    .argument('<files...>', 'files to load')
    .option('--chunk-size <n>', 'characters per chunk', parseCount, 1000)
    .option('--chunk-overlap <n>', 'characters shared by neighbouring chunks (default 150)', parseCount)
    .addOption(
      new Option('--encoding <name>', 'how text files are encoded')
        .choices(TEXT_ENCODINGS)
        .argParser(oneOf(TEXT_ENCODINGS))
        .default('utf-8'),
    )
    .option(
      '--reembed',
      "first re-embed the sidekick's documents that were embedded with another model than the configured one (without it, such documents refuse the run)",
    )
    .option('--json', 'print the result as JSON')
    .action(
      async (
        files: string[],
        o: {
          client: string;
          agent: string;
          chunkSize: number;
          chunkOverlap?: number;
          encoding: TextEncoding;
          reembed?: boolean;
          json?: boolean;
        },
      ) => {
        const ops = ctx.operations();
        const worker = ops.worker();
        const result = await ingestDocuments(
          { connections: worker.connections, embedder: worker.embedder, log: ops.log },
          {
            clientId: o.client,
            agent: o.agent,
            files,
            chunkSize: o.chunkSize,
            chunkOverlap: o.chunkOverlap,
            encoding: o.encoding,
            reembed: o.reembed,
            onProgress: (e) =>
              ctx.err(
                `${e.file}: ${e.stage}${e.chunks !== undefined ? ` (${plural(e.chunks, 'chunk')})` : ''}`,
              ),
            onReembedProgress: reembedProgress(ctx),
          },
        );
        if (o.json) return ctx.json(result);
        if (result.reembedded) for (const line of formatReembed(result.reembedded)) ctx.out(line);
        for (const d of result.documents) ctx.out(formatIngested(d));
      },
    );

  docs
    .command('list')
    .description("a client's documents (or one sidekick's)")
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--agent <slug>', 'only the documents of this sidekick (slug or id)', parseSidekick)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; agent?: string; json?: boolean }) => {
      const ops = ctx.operations();
      const result = await listDocuments(
        { connections: ops.worker().connections },
        { clientId: o.client, agent: o.agent },
      );
      if (o.json) return ctx.json(result);
      if (!result.documents.length) return ctx.out('no documents');
      for (const d of result.documents) ctx.out(formatListing(d));
    });

  docs
    .command('show')
    .description('one document: size, chunks, embedding model and dimensions, the sidekicks that use it')
    .requiredOption('--client <id>', 'client id', parseUuid)
    .argument('<document>', 'its id, or its source name (the file name it was loaded from)')
    .option('--agent <slug>', "look the name up among this sidekick's documents only", parseSidekick)
    .option('--chunks <n>', 'also print the first n chunks, shortened', parseCount)
    .option('--json', 'print as JSON')
    .action(
      async (document: string, o: { client: string; agent?: string; chunks?: number; json?: boolean }) => {
        const d = await showDocument(
          { connections: ctx.operations().worker().connections },
          { clientId: o.client, document, agent: o.agent, preview: o.chunks },
        );
        if (o.json) return ctx.json(d);
        for (const line of formatDocument(d)) ctx.out(line);
      },
    );

  docs
    .command('remove')
    .description(
      'delete documents with their chunks, from every sidekick that uses them (each named by id or source name; all are found before any is deleted)',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .argument('<documents...>', 'ids or source names (file names)')
    .option('--agent <slug>', "look names up among this sidekick's documents only", parseSidekick)
    .option('--json', 'print the result as JSON')
    .action(async (documents: string[], o: { client: string; agent?: string; json?: boolean }) => {
      const result = await removeDocuments(
        { connections: ctx.operations().worker().connections },
        { clientId: o.client, documents, agent: o.agent },
      );
      if (o.json) return ctx.json(result);
      for (const r of result.removed) {
        ctx.out(
          `removed ${r.id}  ${r.title ?? ''}  ${plural(r.chunks, 'chunk')}${r.sidekicks.length ? `, from ${r.sidekicks.join(', ')}` : ''}`,
        );
      }
    });

  docs
    .command('reembed')
    .description(
      'embed the documents again with the configured embedder (EMBEDDING_*), in pages, with progress on stderr; sessions switch to each document when it is complete; run it again to resume after a failure',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--agent <slug>', "only this sidekick's documents", parseSidekick)
    .option('--page-size <n>', 'chunks per page (at most 1000, the API row cap)', parseCount, 100)
    .option('--all', 'also documents already embedded with the configured model')
    .option('--json', 'print the result as JSON')
    .action(
      async (o: { client: string; agent?: string; pageSize: number; all?: boolean; json?: boolean }) => {
        const ops = ctx.operations();
        const worker = ops.worker();
        const result = await reembedDocuments(
          { connections: worker.connections, embedder: worker.embedder, log: ops.log },
          {
            clientId: o.client,
            agent: o.agent,
            pageSize: o.pageSize,
            all: o.all,
            onProgress: reembedProgress(ctx),
          },
        );
        if (o.json) return ctx.json(result);
        for (const line of formatReembed(result)) ctx.out(line);
      },
    );
}

function reembedProgress(ctx: CommandContext): NonNullable<ReembedOptions['onProgress']> {
  return (e) => ctx.err(`${e.title ?? e.documentId}: ${e.done}/${plural(e.total, 'chunk')} re-embedded`);
}

export function formatIngested(d: IngestedDocument): string {
  const replaced = d.replacedId ? `  (replaces ${d.replacedId})` : '';
  return `${d.outcome.padEnd(14)} ${d.documentId}  ${d.title}  ${plural(d.chunks, 'chunk')}${replaced}`;
}

export function formatListing(d: DocumentListing): string {
  const model = d.embeddingModel ? `  [${d.embeddingModel}]` : '';
  const version = d.versionOf ? `  (new version of ${d.versionOf}, being written)` : '';
  const used = `  ${d.sidekicks.length ? `(${d.sidekicks.join(', ')})` : '(no sidekick)'}`;
  return `${d.id}  ${(d.status ?? '').padEnd(10)} ${(d.chunks === null ? '? chunks' : plural(d.chunks, 'chunk')).padStart(12)}  ${d.title ?? ''}${used}${model}${version}`;
}

export function formatDocument(d: DocumentDetails): string[] {
  const lines = [
    `document    ${d.id} "${d.title ?? ''}" (${d.status ?? '?'}, ${d.sourceType ?? '?'}${d.mime ? `, ${d.mime}` : ''})`,
    `size        ${d.bytes === null ? '? bytes' : plural(d.bytes, 'byte')}${d.pages !== null ? `, ${plural(d.pages, 'page')}` : ''}`,
    `chunks      ${d.chunks}${d.chunkSize ? ` (size ${d.chunkSize}, overlap ${d.chunkOverlap ?? '?'})` : ''}`,
    `embedded    ${d.embeddingModel ?? '(model not recorded)'}${d.embeddingDimensions ? `, ${d.embeddingDimensions} dimensions` : ''}`,
    `sidekicks   ${d.sidekicks.length ? d.sidekicks.map((s) => `${s.slug}${s.enabled ? '' : ' (disabled)'}`).join(', ') : '(none: no session retrieves it)'}`,
  ];
  if (d.sha256) lines.push(`sha256      ${d.sha256}`);
  for (const c of d.chunkPreview ?? []) lines.push(`  #${c.index} (${plural(c.chars, 'char')}) ${c.text}`);
  return lines;
}

export function formatReembed(r: ReembedResult): string[] {
  const lines = r.documents.map(
    (d) =>
      `re-embedded    ${d.documentId}  ${d.title ?? ''}  ${plural(d.chunks, 'chunk')} (was ${d.from ?? 'not recorded'}${d.resumedAt ? `; resumed at ${d.resumedAt}` : ''})`,
  );
  lines.push(
    `${plural(r.documents.length, 'document')} re-embedded with ${r.model} (${r.dimensions} dimensions), ${r.unchanged} already ${r.unchanged === 1 ? 'was' : 'were'}`,
  );
  return lines;
}
