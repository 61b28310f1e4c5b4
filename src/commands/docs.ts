import type { Command } from 'commander';
import {
  type DocumentListing,
  type IngestedDocument,
  ingestDocuments,
  listDocuments,
} from '../ops/ingest.js';
import { type CommandContext, parseCount } from './shared.js';

/** `sidekick docs ...`: load and list a sidekick's documents. */
export function docsCommands(program: Command, ctx: CommandContext): void {
  const docs = program.command('docs').description("load and list a sidekick's documents");

  docs
    .command('add')
    .description("load .txt, .md or .pdf files into a sidekick's knowledge base")
    .requiredOption('--client <id>', 'client id')
    .requiredOption('--agent <slug>', 'the sidekick (slug or id)')
    .argument('<files...>', 'files to load')
    .option('--chunk-size <n>', 'characters per chunk', parseCount, 1000)
    .option('--chunk-overlap <n>', 'characters shared by neighbouring chunks', parseCount, 150)
    .option('--json', 'print the result as JSON')
    .action(
      async (
        files: string[],
        o: { client: string; agent: string; chunkSize: number; chunkOverlap: number; json?: boolean },
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
            onProgress: (e) =>
              ctx.err(`${e.file}: ${e.stage}${e.chunks !== undefined ? ` (${e.chunks} chunks)` : ''}`),
          },
        );
        if (o.json) return ctx.json(result);
        for (const d of result.documents) ctx.out(formatIngested(d));
      },
    );

  docs
    .command('list')
    .description("a client's documents (or one sidekick's)")
    .requiredOption('--client <id>', 'client id')
    .option('--agent <slug>', 'only the documents of this sidekick (slug or id)')
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
}

export function formatIngested(d: IngestedDocument): string {
  return `${d.outcome.padEnd(14)} ${d.documentId}  ${d.title}  ${d.chunks} chunks`;
}

export function formatListing(d: DocumentListing): string {
  return `${d.id}  ${(d.status ?? '').padEnd(10)} ${String(d.chunks ?? '?').padStart(5)} chunks  ${d.title ?? ''}`;
}
