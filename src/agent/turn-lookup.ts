import type { TurnContext } from '../context/context-manager.js';

/**
 * Words that carry no topic: articles, pronouns, auxiliaries, prepositions, conjunctions, question
 * words and spoken fillers. Retrieval ranks by what a text is about, so two texts that differ only
 * in these find the same passages. English only: in another language every word counts, and the
 * rule below falls back to "the same words".
 */
const STOP_WORDS = new Set(
  (
    'a an the this that these those some any my your his her its our their me you him us them i we he she it ' +
    'they mine yours myself is are was were be been being am do does did doing have has had having can could ' +
    'will would shall should may might must to of in on at by for with about from into onto over under up ' +
    'down out off as than then so and or but if because while when where what which who whom whose why how ' +
    'there here just also too very really please um uh er erm hmm ah oh okay ok well yeah like mean know ' +
    "i'm i've i'd i'll it's that's there's what's don't doesn't didn't can't won't isn't"
  ).split(' '),
);

/** What retrieval depends on: the text's words, lower-cased, without punctuation, stop words, 's or plural -s. */
export function contentWords(text: string): Set<string> {
  const words = text.toLowerCase().match(/[\p{L}\p{N}]+(?:'[\p{L}]+)?/gu) ?? [];
  const out = new Set<string>();
  for (const word of words) {
    if (STOP_WORDS.has(word)) continue;
    const w = word.endsWith("'s") ? word.slice(0, -2) : word;
    out.add(w.length > 3 && w.endsWith('s') && !w.endsWith('ss') ? w.slice(0, -1) : w);
  }
  return out;
}

/**
 * The rule for reusing a lookup made for another text of the same turn: the two texts have the
 * same content words (same set, whatever the order, case, punctuation, fillers and stop words).
 * "My rear brake squeaks" and "my rear brake squeaks, what should I do about it?" qualify; "I
 * ride a gravel bike" and "I ride a gravel bike, how hard should I pump the tyres" do not. Two
 * texts without content words qualify only if their words are the same.
 */
export function closeEnough(lookedUp: string, final: string): boolean {
  const a = contentWords(lookedUp);
  const b = contentWords(final);
  if (a.size === 0 && b.size === 0) {
    const plain = (t: string) =>
      t
        .toLowerCase()
        .match(/[\p{L}\p{N}']+/gu)
        ?.join(' ') ?? '';
    return plain(lookedUp) === plain(final);
  }
  if (a.size !== b.size) return false;
  for (const w of a) if (!b.has(w)) return false;
  return true;
}

/** What happened to a turn's lookups, for logs, the harness and tests. */
export interface LookupEvent {
  type: 'started' | 'done' | 'cancelled' | 'reused';
  /** The text looked up. */
  text: string;
  /** What started it: a final segment, an interim transcript, or the reply itself. */
  source: 'final' | 'interim' | 'reply';
  /** performance.now() */
  at: number;
  /** done: how long the lookup took. */
  elapsedMs?: number;
}

export interface TurnLookupsOptions {
  /** One context lookup; the signal aborts it when a newer text of the turn supersedes it. */
  lookup(text: string, signal: AbortSignal): Promise<TurnContext | undefined>;
  observe?: (ev: LookupEvent) => void;
  /**
   * Interim transcripts start a lookup only once a segment's interims have been streaming this
   * long, and then at most once per this interval. An STT that streams words while the user
   * speaks gets lookups ahead of the end of the turn; one whose interims come in a burst just
   * before its final (OpenAI's realtime transcription) costs no extra lookup. Default 300 ms.
   */
  interimLeadMs?: number;
  now?: () => number;
}

interface Lookup {
  text: string;
  source: LookupEvent['source'];
  abort: AbortController;
  result: Promise<TurnContext | undefined>;
  settled: TurnContext | undefined;
  /** A reply waits on it: an interim transcript does not cancel it. */
  awaited: boolean;
}

/**
 * The context lookups of a session's user turns, started before the turn ends: at each final
 * segment of the turn (with the segments so far), and on interim transcripts where the STT streams
 * them while the user speaks. At most one lookup is in flight: a newer text of the turn that is not
 * close enough (see closeEnough) to the one being looked up cancels it. The reply takes the lookup
 * whose text is close enough to its own, or starts one.
 */
export class TurnLookups {
  private current: Lookup | undefined;
  private finals: string[] = [];
  private interimStreamSince: number | undefined;
  private lastInterimLookup = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;
  private readonly interimLeadMs: number;

  constructor(private readonly opts: TurnLookupsOptions) {
    this.now = opts.now ?? (() => performance.now());
    this.interimLeadMs = opts.interimLeadMs ?? 300;
  }

  /** An interim transcript of the segment being spoken (the segment's words so far). */
  interim(text: string): void {
    if (!text.trim()) return;
    const now = this.now();
    this.interimStreamSince ??= now;
    if (now - this.interimStreamSince < this.interimLeadMs) return;
    if (now - this.lastInterimLookup < this.interimLeadMs) return;
    if (this.current?.awaited) return;
    if (this.speculate(this.turnText(text), 'interim')) this.lastInterimLookup = now;
  }

  /** A final segment of the user's turn. */
  final(segment: string): void {
    if (!segment.trim()) return;
    this.finals.push(segment.trim());
    this.interimStreamSince = undefined;
    this.speculate(this.turnText(), 'final');
  }

  /** The user's turn was committed: the next transcripts start a new turn. */
  endTurn(): void {
    this.finals = [];
    this.interimStreamSince = undefined;
    this.lastInterimLookup = Number.NEGATIVE_INFINITY;
  }

  /**
   * The context for a reply to `text`: the lookup in flight or done when its text is close enough,
   * else a new one. Undefined when the lookup failed, or when a newer text of the turn superseded
   * it (the reply being prepared is then for words the user has gone on from).
   */
  async forReply(text: string): Promise<TurnContext | undefined> {
    let lookup = this.current;
    if (lookup && closeEnough(lookup.text, text)) {
      this.opts.observe?.({ type: 'reused', text: lookup.text, source: lookup.source, at: this.now() });
    } else {
      this.speculate(text, 'reply');
      lookup = this.current!;
    }
    lookup.awaited = true;
    const ctx = await lookup.result;
    if (!lookup.abort.signal.aborted) return ctx;
    const next = this.current;
    return next && next !== lookup && closeEnough(next.text, text) ? this.forReply(text) : undefined;
  }

  /** The vector of `text` when the turn's lookup embedded exactly that text (for its transcript row). */
  embeddingFor(text: string): number[] | undefined {
    const done = this.current?.settled;
    return done && done.query.trim() === text.trim() ? done.embedding : undefined;
  }

  private turnText(interim?: string): string {
    return [...this.finals, ...(interim ? [interim.trim()] : [])].join(' ');
  }

  /** Starts a lookup of `text` unless the current one is close enough; true when one started. */
  private speculate(text: string, source: LookupEvent['source']): boolean {
    const previous = this.current;
    if (previous && closeEnough(previous.text, text)) return false;
    if (previous && !previous.settled) {
      previous.abort.abort();
      this.opts.observe?.({
        type: 'cancelled',
        text: previous.text,
        source: previous.source,
        at: this.now(),
      });
    }
    const abort = new AbortController();
    const started = this.now();
    const lookup: Lookup = {
      text,
      source,
      abort,
      settled: undefined,
      awaited: false,
      result: Promise.resolve(undefined),
    };
    lookup.result = this.opts.lookup(text, abort.signal).then((ctx) => {
      if (!abort.signal.aborted) {
        lookup.settled = ctx;
        this.opts.observe?.({ type: 'done', text, source, at: this.now(), elapsedMs: this.now() - started });
      }
      return ctx;
    });
    this.current = lookup;
    this.opts.observe?.({ type: 'started', text, source, at: started });
    return true;
  }
}
