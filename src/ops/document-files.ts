import { extname } from 'node:path';
import { OpsError, UsageError } from './errors.js';

/**
 * What a file given to `sidekick docs add` is, and its text: by extension (.txt, .md, .markdown,
 * .pdf), or, for a file without one, by its first bytes (PDF's `%PDF-` magic, else text). Text is
 * UTF-8 unless the operator names another encoding; a file that is not gets a hint naming the
 * encoding it looks like and how to convert it.
 */

export const SUPPORTED_EXTENSIONS = ['.txt', '.md', '.markdown', '.pdf'] as const;

/** Encodings `--encoding` accepts (WHATWG names, as TextDecoder knows them). */
export const TEXT_ENCODINGS = ['utf-8', 'latin1'] as const;
export type TextEncoding = (typeof TEXT_ENCODINGS)[number];

export type DocumentMime = 'text/plain' | 'text/markdown' | 'application/pdf';

const PDF_MAGIC = Buffer.from('%PDF-');
const ZIP_MAGIC = Buffer.from([0x50, 0x4b, 0x03, 0x04]);
/** How much of an extension-less file is looked at to tell text from binary. */
const SNIFF_BYTES = 8192;

/** Refuses a file type before anything is read (an extension-less file is sniffed later). */
export function checkExtension(file: string): void {
  const ext = extname(file).toLowerCase();
  if (ext === '' || (SUPPORTED_EXTENSIONS as readonly string[]).includes(ext)) return;
  throw new UsageError(
    `${file}: unsupported file type "${ext}"; supported: ${SUPPORTED_EXTENSIONS.join(', ')}, or a text or PDF file without an extension`,
  );
}

/** The file's type: by extension, or (none) by its content. */
export function mimeOf(file: string, data: Buffer): DocumentMime {
  const ext = extname(file).toLowerCase();
  if (ext === '.pdf') return 'application/pdf';
  if (ext === '.md' || ext === '.markdown') return 'text/markdown';
  if (ext === '.txt') return 'text/plain';
  // No extension: sniffed.
  if (data.subarray(0, PDF_MAGIC.length).equals(PDF_MAGIC)) return 'application/pdf';
  if (data.subarray(0, ZIP_MAGIC.length).equals(ZIP_MAGIC)) {
    throw new UsageError(
      `${file}: a ZIP archive (a .docx, .xlsx or .odt is one): export it as PDF or plain text first`,
    );
  }
  if (data.subarray(0, SNIFF_BYTES).includes(0) && !utf16Bom(data)) {
    throw new UsageError(`${file}: a binary file, neither text nor PDF; supported: text and PDF files`);
  }
  return 'text/plain';
}

/** The text of a file: every page of a PDF (through unpdf), or the decoded text. */
export async function extractText(
  file: string,
  data: Buffer,
  opts: { encoding?: TextEncoding | undefined } = {},
): Promise<{ text: string; mime: DocumentMime; pages?: number }> {
  const mime = mimeOf(file, data);
  if (mime === 'application/pdf') {
    const { extractText: pdfText } = await import('unpdf');
    try {
      const { text, totalPages } = await pdfText(new Uint8Array(data), { mergePages: true });
      return { text, mime, pages: totalPages };
    } catch (err) {
      throw new OpsError(`${file}: not a readable PDF (${(err as Error).message})`);
    }
  }
  const text = decodeText(file, data, opts.encoding ?? 'utf-8');
  return { text: text.replace(/^\uFEFF/, ''), mime };
}

function decodeText(file: string, data: Buffer, encoding: TextEncoding): string {
  if (encoding !== 'utf-8') return new TextDecoder(encoding).decode(data);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(data);
  } catch {
    throw new UsageError(`${file}: not UTF-8 text; ${encodingHint(file, data)}`);
  }
}

/** What the bytes look like instead, and how to convert them. */
function encodingHint(file: string, data: Buffer): string {
  const quoted = `'${file.replace(/'/g, "'\\''")}'`;
  const bom = utf16Bom(data);
  if (bom) {
    return `it starts with a UTF-16 byte order mark (${bom}): convert it with \`iconv -f ${bom} -t utf-8 ${quoted} > converted.txt\` and load converted.txt`;
  }
  return (
    'it looks like Latin-1 (ISO-8859-1) or Windows-1252 text: convert it with ' +
    `\`iconv -f latin1 -t utf-8 ${quoted} > converted.txt\` and load converted.txt, or load it as it is with --encoding latin1`
  );
}

function utf16Bom(data: Buffer): 'utf-16le' | 'utf-16be' | undefined {
  if (data[0] === 0xff && data[1] === 0xfe) return 'utf-16le';
  if (data[0] === 0xfe && data[1] === 0xff) return 'utf-16be';
  return undefined;
}
