import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HashingEmbedder } from '../src/context/hashing-embedder.js';
import { maskPii, redactDeep, redactorFor, redactTurn } from '../src/context/redaction.js';
import { readClientSettings } from '../src/tenancy/client-settings.js';
import {
  type AfterSessionBed,
  converse,
  setSettings,
  startAfterSessionBed,
} from './support/after-session.js';
import { cosine } from './support/vectors.js';

/**
 * PII masking of what is stored: the patterns one by one (and the ordinary numbers that must stay),
 * then a whole session of a client with redaction on: the stored rows, the text their embeddings
 * were made of, and the live conversation (which is not altered).
 */

const masked = (text: string, region: 'US' | 'GB' | 'DE' = 'US') => maskPii(text, region).text;

describe('the patterns', () => {
  it.each([
    ['write to jane.doe+bikes@example.co.uk please', 'write to [email] please'],
    ['it is jane dot doe at example dot com', 'it is [email]'],
    ['call me on (415) 555-2671 tonight', 'call me on [phone] tonight'],
    ['or 415.555.2671', 'or [phone]'],
    ['my mobile is +44 20 7946 0958', 'my mobile is [phone]'],
    ['Berlin office +49 30 901820', 'Berlin office [phone]'],
    ['card 4111 1111 1111 1111 expires soon', 'card [card] expires soon'],
    ['mastercard 5555-5555-5555-4444', 'mastercard [card]'],
    ['amex 378282246310005', 'amex [card]'],
    ['IBAN DE89 3704 0044 0532 0130 00 for the refund', 'IBAN [iban] for the refund'],
    ['pay into GB82WEST12345698765432', 'pay into [iban]'],
    ['IBAN GB82 WEST 1234 5698 7654 32 THANKS', 'IBAN [iban] THANKS'],
  ])('%s', (input, expected) => {
    expect(masked(input)).toBe(expected);
  });

  it('a national number is read in the client’s phone region', () => {
    expect(masked('ring 020 7946 0958', 'GB')).toBe('ring [phone]');
    expect(masked('ring 020 7946 0958', 'US')).toBe('ring 020 7946 0958');
  });

  it.each([
    'Road bike tyres run at 80 to 100 psi; gravel tyres at 35 to 50 psi.',
    'I bought it in 2019 for $1,299.99 and it weighs 8.5 kg.',
    'order number 4111111111111112 (one digit off a card: fails Luhn)',
    'invoice 1234567812345670 passes Luhn but is no card brand',
    'reference 123456789012 and zip code 94107',
    'DE89370400440532013001 has a wrong IBAN checksum',
    'meet at 10:30 on 2024-05-17, platform 9',
    'look at this dot here, it is fine',
    'ride 300 kilometres, then replace the chain at 0.5 percent stretch',
  ])('leaves ordinary numbers alone: %s', (text) => {
    expect(masked(text)).toBe(text);
  });

  it('counts what it masked, by kind', () => {
    expect(maskPii('a@b.io, 4111 1111 1111 1111, (415) 555-2671, a@c.io', 'US').found).toEqual({
      email: 2,
      phone: 1,
      card: 1,
      iban: 0,
    });
  });

  it('off means stored as said; a turn keeps its vector only when masking changed nothing', () => {
    expect(redactorFor(readClientSettings({ redaction: 'off' }, () => {}))).toBeUndefined();
    // An unreadable setting masks: the client meant something, and masking is the safe reading.
    const warned: string[] = [];
    expect(redactorFor(readClientSettings({ redaction: 'MASK' }, (m) => warned.push(m)))).toBeDefined();
    expect(warned).toEqual(['clients.settings: unreadable value, using the safe one']);

    const redact = redactorFor({ redaction: 'mask', phone_region: 'US' })!;
    const vector = [0.1, 0.2];
    const plain = { role: 'user' as const, content: 'how hard should my tyres be', embedding: vector };
    expect(redactTurn(redact, plain)).toBe(plain);
    const pii = { role: 'user' as const, content: 'mail me at a@b.io', embedding: vector };
    expect(redactTurn(redact, pii)).toEqual({ role: 'user', content: 'mail me at [email]' });
    expect(redactDeep(redact, { contact: 'a@b.io', n: 3, list: ['+1 415 555 2671'] })).toEqual({
      contact: '[email]',
      n: 3,
      list: ['[phone]'],
    });
  });
});

describe('a session of a client that redacts', () => {
  let bed: AfterSessionBed;
  const hashing = new HashingEmbedder();
  beforeAll(async () => {
    bed = await startAfterSessionBed();
  });
  afterAll(async () => {
    await bed?.stop();
  });

  const said = [
    'My email is jane.doe@example.com and my card is 4111 1111 1111 1111.',
    'Call me on (415) 555-2671 about my 2019 Trek, tyres at 80 psi.',
  ];

  it('stores masked rows, embeds the masked text, and leaves the live conversation as said', async () => {
    const A = bed.stack.demo!.adventurers[0]!;
    await setSettings(bed.stack, A.clientId, { redaction: 'mask' });
    bed.openai.reset();
    const { prepared, closed } = await converse(bed.runtime(), A, said, { userId: bed.stack.demo!.userId });
    expect(closed).toMatchObject({ dropped: 0, spooled: 0 });

    // The model heard the user as they spoke: the live conversation is not altered.
    const toModel = JSON.stringify(bed.openai.chatRequests().map((r) => r.body.messages));
    expect(toModel).toContain('jane.doe@example.com');
    expect(toModel).toContain('4111 1111 1111 1111');

    const rows = await bed.stack.pool.sql.query<{ role: string; content: string; embeddings: string }>(
      `SELECT role, content, embeddings::text FROM conversation_transcripts
        WHERE conversation_id = $1 AND role = 'user' ORDER BY created_at`,
      [prepared.conversationId],
    );
    expect(rows.map((r) => r.content)).toEqual([
      'My email is [email] and my card is [card].',
      'Call me on [phone] about my 2019 Trek, tyres at 80 psi.',
    ]);
    // The echoing model repeated it all back: its stored replies are masked too.
    const stored = await bed.stack.pool.sql.query<{ content: string }>(
      'SELECT content FROM conversation_transcripts WHERE conversation_id = $1',
      [prepared.conversationId],
    );
    for (const r of stored) expect(r.content).not.toMatch(/jane\.doe|4111|555-2671/);
    // What was embedded for storage: the masked text only (the model's embeddings are HashingEmbedder's).
    for (const row of rows) {
      const vector = JSON.parse(row.embeddings) as number[];
      expect(cosine(vector, hashing.embedOne(row.content))).toBeGreaterThan(0.999);
    }
    // (The turn's context lookup embeds the query as said: that vector is compared, never stored.)
    const embedded = bed.openai.embeddingRequests().flatMap((r) => [r.body.input].flat().map(String));
    expect(embedded).toEqual(expect.arrayContaining(rows.map((r) => r.content)));
  });

  it('a client that does not redact stores what was said', async () => {
    const B = bed.stack.demo!.adventurers[1]!;
    await setSettings(bed.stack, B.clientId, { redaction: 'off' });
    const { prepared } = await converse(bed.runtime(), B, [said[0]!]);
    const [row] = await bed.stack.pool.sql.query<{ content: string }>(
      `SELECT content FROM conversation_transcripts WHERE conversation_id = $1 AND role = 'user'`,
      [prepared.conversationId],
    );
    expect(row!.content).toBe(said[0]);
  });
});
