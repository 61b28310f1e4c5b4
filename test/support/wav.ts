import { readFileSync } from 'node:fs';

/** Mono 16-bit PCM and its rate: what the speech fixtures, the STT and the TTS stand-ins exchange. */
export interface Pcm {
  sampleRate: number;
  samples: Int16Array;
}

/** A RIFF/WAVE file of 16-bit PCM (mono, or the first channel of more). */
export function parseWav(buf: Buffer): Pcm {
  if (buf.toString('ascii', 0, 4) !== 'RIFF' || buf.toString('ascii', 8, 12) !== 'WAVE') {
    throw new Error('not a RIFF/WAVE file');
  }
  let offset = 12;
  let channels = 0;
  let sampleRate = 0;
  let bits = 0;
  while (offset + 8 <= buf.length) {
    const id = buf.toString('ascii', offset, offset + 4);
    // espeak-ng writes 0xFFFFFFFF as the data size when it streams to stdout.
    let size = buf.readUInt32LE(offset + 4);
    const body = offset + 8;
    if (id === 'fmt ') {
      const format = buf.readUInt16LE(body);
      channels = buf.readUInt16LE(body + 2);
      sampleRate = buf.readUInt32LE(body + 4);
      bits = buf.readUInt16LE(body + 14);
      if (format !== 1 || bits !== 16) throw new Error(`WAVE format ${format}/${bits} bits: 16-bit PCM only`);
    } else if (id === 'data') {
      if (!sampleRate) throw new Error('WAVE data before its fmt chunk');
      if (size === 0xffffffff || body + size > buf.length) size = buf.length - body;
      const frames = Math.floor(size / (2 * channels));
      const samples = new Int16Array(frames);
      for (let i = 0; i < frames; i++) samples[i] = buf.readInt16LE(body + i * 2 * channels);
      return { sampleRate, samples };
    }
    offset = body + size + (size % 2);
  }
  throw new Error('WAVE file without a data chunk');
}

export function readWav(path: string): Pcm {
  return parseWav(readFileSync(path));
}

/** 16-bit mono PCM as a RIFF/WAVE file. */
export function wavBytes(pcm: Pcm): Buffer {
  const data = Buffer.from(pcm.samples.buffer, pcm.samples.byteOffset, pcm.samples.byteLength);
  const header = Buffer.alloc(44);
  header.write('RIFF', 0, 'ascii');
  header.writeUInt32LE(36 + data.length, 4);
  header.write('WAVE', 8, 'ascii');
  header.write('fmt ', 12, 'ascii');
  header.writeUInt32LE(16, 16);
  header.writeUInt16LE(1, 20); // PCM
  header.writeUInt16LE(1, 22); // mono
  header.writeUInt32LE(pcm.sampleRate, 24);
  header.writeUInt32LE(pcm.sampleRate * 2, 28);
  header.writeUInt16LE(2, 32);
  header.writeUInt16LE(16, 34);
  header.write('data', 36, 'ascii');
  header.writeUInt32LE(data.length, 40);
  return Buffer.concat([header, data]);
}

/** Milliseconds of audio in `samples` at `sampleRate`. */
export const durationMs = (samples: number, sampleRate: number) => (samples / sampleRate) * 1000;
