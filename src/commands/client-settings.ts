import { type Command, InvalidArgumentError } from 'commander';
import { UsageError } from '../ops/errors.js';
import { OutboundError } from '../outbound/index.js';
import {
  type ClientSettings,
  checkSettingsPatch,
  InvalidSettingError,
  REDACTION_MODES,
  readClientSettings,
  type SettingName,
} from '../tenancy/client-settings.js';
import { type CommandContext, oneOf, parseUuid } from './shared.js';

const onOff = (value: string): boolean => {
  if (value === 'on') return true;
  if (value === 'off') return false;
  throw new InvalidArgumentError('expected on or off');
};

/** The option each setting is set with, for error messages that name what the operator typed. */
const OPTION: Record<SettingName, string> = {
  webhook_url: '--webhook-url',
  webhook_transcript: '--webhook-transcript',
  memory: '--memory',
  redaction: '--redaction',
  phone_region: '--phone-region',
};

/** `sidekick clients settings ...`: a client's own switches (platform clients.settings). */
export function clientSettingsCommands(clients: Command, ctx: CommandContext): void {
  const settings = clients
    .command('settings')
    .description("a client's switches: its webhook, caller memory, PII redaction");

  settings
    .command('show')
    .description(
      'the settings in force (defaults included; an unreadable stored value shows as its safe value)',
    )
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option('--json', 'print as JSON')
    .action(async (o: { client: string; json?: boolean }) => {
      const row = await ctx.operations().platform.getClient(o.client);
      const warnings: string[] = [];
      const s = readClientSettings(row.settings, (msg, f) => warnings.push(`${msg} (${JSON.stringify(f)})`));
      if (o.json) return ctx.json({ client_id: row.id, settings: s, warnings });
      for (const line of formatSettings(s)) ctx.out(line);
      for (const w of warnings) ctx.out(`warning ${w}`);
    });

  settings
    .command('set')
    .description('change some settings; the others keep their values')
    .requiredOption('--client <id>', 'client id', parseUuid)
    .option(
      '--webhook-url <url>',
      'where the signed end-of-session report is POSTed (http or https); "none" removes it',
    )
    .option('--webhook-transcript <on|off>', 'the report carries the stored transcript', onOff)
    .option(
      '--memory <on|off>',
      'after a session with a user_id, what the user said about themselves goes into their overview',
      onOff,
    )
    .option(
      '--redaction <mode>',
      `PII in what is stored: ${REDACTION_MODES.join(' or ')}`,
      oneOf(REDACTION_MODES),
    )
    .option(
      '--phone-region <code>',
      'region (e.g. US, GB) that phone numbers without +country code are read in',
    )
    .option('--json', 'print the result as JSON')
    .action(
      async (o: {
        client: string;
        webhookUrl?: string;
        webhookTranscript?: boolean;
        memory?: boolean;
        redaction?: ClientSettings['redaction'];
        phoneRegion?: string;
        json?: boolean;
      }) => {
        const requested: Partial<Record<SettingName, unknown>> = {
          webhook_url: o.webhookUrl === undefined ? undefined : o.webhookUrl === 'none' ? null : o.webhookUrl,
          webhook_transcript: o.webhookTranscript,
          memory: o.memory,
          redaction: o.redaction,
          phone_region: o.phoneRegion?.toUpperCase(),
        };
        let patch: Partial<ClientSettings>;
        try {
          patch = checkSettingsPatch(requested);
        } catch (err) {
          if (!(err instanceof InvalidSettingError)) throw err;
          const name = OPTION[err.setting as SettingName] ?? err.setting;
          throw new UsageError(`${name}: ${err.message.slice(err.setting.length + 2)}`);
        }
        if (!Object.keys(patch).length) {
          throw new UsageError(`nothing to set: give at least one of ${Object.values(OPTION).join(', ')}`);
        }
        const ops = ctx.operations();
        // A URL a client wrote is untrusted: refused here, by the same guard every delivery passes.
        const notes: string[] = [];
        if (patch.webhook_url) {
          try {
            await ops.worker().outbound.check(patch.webhook_url);
          } catch (err) {
            if (!(err instanceof OutboundError)) throw err;
            if (err.kind !== 'unresolvable') throw new UsageError(`--webhook-url: ${err.message}`);
            notes.push(`${err.message} here: reports are delivered once it resolves to a public address`);
          }
        }
        const row = await ops.platform.getClient(o.client);
        const stored =
          row.settings && typeof row.settings === 'object' && !Array.isArray(row.settings)
            ? row.settings
            : {};
        const updated = await ops.platform.updateClient(o.client, { settings: { ...stored, ...patch } });
        const s = readClientSettings(updated.settings, () => undefined);
        if (o.json) return ctx.json({ client_id: updated.id, settings: s });
        for (const line of formatSettings(s)) ctx.out(line);
        for (const note of notes) ctx.err(`note: ${note}`);
        if (patch.webhook_url?.startsWith('http:')) {
          ctx.err('warning: the webhook URL is http: reports (summaries, transcripts) travel unencrypted');
        }
        ctx.err('workers use the new settings from their next client lookup (CLIENT_CACHE_TTL_MS at most)');
      },
    );
}

export function formatSettings(s: ClientSettings): string[] {
  return [
    `webhook_url         ${s.webhook_url ?? '(none)'}`,
    `webhook_transcript  ${s.webhook_transcript ? 'on' : 'off'}`,
    `memory              ${s.memory ? 'on' : 'off'}`,
    `redaction           ${s.redaction}`,
    `phone_region        ${s.phone_region}`,
  ];
}
