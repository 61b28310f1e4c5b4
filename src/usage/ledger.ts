import type { Logger } from 'pino';
import type { SessionMeter } from './meter.js';
import type { LeaseLimits, LeaseSession, SessionLeases } from './session-leases.js';

/**
 * The job's side of its lease (session-leases.ts): started with the session (the slot requestFunc
 * took becomes live; a job whose pending lease is gone takes one under the same limits), renewed
 * every third of its lifetime with the meter's usage so far, marked ended as soon as the session
 * ends (the slot is free then), and finished into the usage ledger once the session's work is done.
 * If the process dies in between, the lease expires and a sweep writes the ledger row from the
 * last renewal. Renewals never fail a session: a platform that does not answer is logged.
 */
export class SessionLedger {
  private timer: NodeJS.Timeout | undefined;
  private finished: Promise<boolean> | undefined;
  /** The renewal in flight: finish() waits for it, so that none lands after the lease is gone. */
  private renewing: Promise<void> = Promise.resolve();
  private lost = false;

  private constructor(
    private readonly leases: SessionLeases,
    private readonly lease: { session: LeaseSession; limits: LeaseLimits },
    private readonly meter: SessionMeter,
    private readonly log: Logger,
    /** When the session started, by the platform database's clock (the ledger's started_at). */
    readonly startedAt: string,
  ) {}

  get jobId(): string {
    return this.lease.session.jobId;
  }

  /** Takes the slot as live (refused with the limit's error: the meter is closed then), and starts renewing it. */
  static async start(
    leases: SessionLeases,
    lease: { session: LeaseSession; limits: LeaseLimits },
    meter: SessionMeter,
    log: Logger,
  ): Promise<SessionLedger> {
    const grant = await leases.acquire(lease.session, lease.limits, { start: true }).catch((err: unknown) => {
      meter.close();
      throw err;
    });
    const ledger = new SessionLedger(leases, lease, meter, log, grant.startedAt ?? new Date().toISOString());
    ledger.timer = setInterval(
      () => void ledger.renewal(),
      Math.max(1000, (leases.times.ttlSeconds * 1000) / 3),
    );
    ledger.timer.unref();
    log.debug({ live: grant.live }, 'session lease live');
    return ledger;
  }

  private renewal(ended = false): Promise<void> {
    this.renewing = this.renewing.then(() => (this.finished ? undefined : this.renew(ended)));
    return this.renewing;
  }

  private async renew(ended: boolean): Promise<void> {
    try {
      if (await this.leases.renew(this.jobId, this.meter.snapshot(), { ended })) return;
      if (this.lost || this.finished) return;
      this.lost = true;
      // It expired (the platform was out of reach for longer than its lifetime) and was moved to the
      // ledger from its last renewal: the session goes on, counted again from here.
      this.log.error(
        { job_id: this.jobId },
        'session lease lost (not renewed in time); its ledger row was written from the last renewal',
      );
      const unlimited = { ...this.lease.limits, maxConcurrent: null, maxMinutes: null };
      await this.leases.acquire(this.lease.session, unlimited, { start: true });
    } catch (err) {
      this.log.warn({ reason: (err as Error).message }, 'session lease renewal failed; trying again');
    }
  }

  /** The session ended: its slot is free, ended_at is now, the usage so far is kept. */
  ended(): Promise<void> {
    return this.renewal(true);
  }

  /** The ledger row, from the final usage; once. true: this call wrote it. */
  finish(): Promise<boolean> {
    this.finished ??= (async () => {
      clearInterval(this.timer);
      await this.renewing;
      try {
        const wrote = await this.leases.finish(this.jobId, this.meter.snapshot());
        this.log.info({ job_id: this.jobId, written: wrote }, 'session usage recorded');
        return wrote;
      } catch (err) {
        // The lease expires and a sweep writes the row from the last renewal.
        this.log.error(
          { reason: (err as Error).message },
          'session usage could not be recorded; the lease expires and a sweep records it from the last renewal',
        );
        return false;
      }
    })();
    return this.finished;
  }
}
