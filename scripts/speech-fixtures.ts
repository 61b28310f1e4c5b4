/**
 * Makes the speech fixtures of the audio-path harness (test/fixtures/speech): short utterances
 * spoken by Debian's espeak-ng, resampled to 16 kHz mono 16-bit WAV, and a manifest of what each
 * one says. Run once and commit the output, so CI needs no espeak-ng:
 *   apt-get install -y espeak-ng && npx tsx scripts/speech-fixtures.ts
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AudioFrame, AudioResampler } from '@livekit/rtc-node';
import { parseWav, wavBytes } from '../test/support/wav.js';

const OUT = join(import.meta.dirname, '..', 'test', 'fixtures', 'speech');
const RATE = 16_000;

/** Ids and texts; each is one phrase, spoken without an inner pause. */
const UTTERANCES: Record<string, string> = {
  'tyre-pressure': 'What tyre pressure should my road bike have',
  'clean-chain': 'How often should I clean my chain',
  'replace-chain': 'When should I replace the chain',
  'brake-squeaks': 'My rear brake squeaks',
  'what-to-do': 'what should I do about it',
  'gravel-bike': 'I ride a gravel bike',
  weekends: 'mostly on weekends',
  'how-hard': 'how hard should I pump the tyres',
};

mkdirSync(OUT, { recursive: true });
const manifest: Record<string, { text: string; file: string }> = {};
for (const [id, text] of Object.entries(UTTERANCES)) {
  const wav = execFileSync('espeak-ng', ['-v', 'en-us', '-s', '165', '--stdout', text]);
  const pcm = parseWav(wav);
  const resampler = new AudioResampler(pcm.sampleRate, RATE, 1);
  const frames = [
    ...resampler.push(new AudioFrame(pcm.samples, pcm.sampleRate, 1, pcm.samples.length)),
    ...resampler.flush(),
  ];
  const total = frames.reduce((n, f) => n + f.samplesPerChannel, 0);
  const samples = new Int16Array(total);
  let at = 0;
  for (const f of frames) {
    samples.set(f.data.subarray(0, f.samplesPerChannel), at);
    at += f.samplesPerChannel;
  }
  const file = `${id}.wav`;
  writeFileSync(join(OUT, file), wavBytes({ sampleRate: RATE, samples }));
  manifest[id] = { text, file };
  console.log(`${file}: ${(total / RATE).toFixed(2)} s  "${text}"`);
}
writeFileSync(join(OUT, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
process.exit(0); // @livekit/rtc-node's native side keeps the event loop alive
