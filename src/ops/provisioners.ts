import type { Logger } from 'pino';
import { UsageError } from './errors.js';
import { ExistingProjectProvisioner } from './existing-project.js';
import { StackControlProvisioner } from './local-provisioner.js';
import { MANAGEMENT_API_URL, ManagementApiProvisioner } from './management-api.js';
import type { DedicatedProvisioner } from './provisioner.js';

/** What an operator says about where a dedicated project comes from (the CLI's flags). */
export interface DedicatedProjectSource {
  managementApiUrl?: string | undefined;
  organization?: string | undefined;
  region?: string | undefined;
  instanceSize?: string | undefined;
  /** A project that already has the dedicated schema (its keys come from the environment). */
  existingProjectUrl?: string | undefined;
  existingProjectRef?: string | undefined;
}

export { MANAGEMENT_API_URL };

/**
 * The dedicated-project provisioner that the flags and the environment ask for: an existing project
 * (`--existing-project-url`, keys from DEDICATED_SUPABASE_SERVICE_ROLE_KEY and
 * DEDICATED_SUPABASE_ANON_KEY: keys are never arguments), new projects through Supabase's
 * Management API (SUPABASE_ACCESS_TOKEN), or new projects of the local stack running in another
 * terminal (LOCAL_STACK_CONTROL_URL and LOCAL_STACK_CONTROL_TOKEN, printed by `npm run stack`).
 * undefined when none is configured.
 */
export function selectProvisioner(
  source: DedicatedProjectSource,
  env: NodeJS.ProcessEnv,
  log: Logger,
): DedicatedProvisioner | undefined {
  if (source.existingProjectUrl) {
    const serviceRoleKey = env.DEDICATED_SUPABASE_SERVICE_ROLE_KEY?.trim();
    const anonKey = env.DEDICATED_SUPABASE_ANON_KEY?.trim();
    if (!serviceRoleKey || !anonKey) {
      throw new UsageError(
        '--existing-project-url needs DEDICATED_SUPABASE_SERVICE_ROLE_KEY and DEDICATED_SUPABASE_ANON_KEY in the environment (keys are never taken as arguments)',
      );
    }
    let url: URL;
    try {
      url = new URL(source.existingProjectUrl);
    } catch {
      throw new UsageError(`--existing-project-url: not a URL: ${source.existingProjectUrl}`);
    }
    // https://<ref>.supabase.co names its ref; any other host stands for itself.
    const hosted = /^([a-z]{20})\.supabase\.co$/.exec(url.hostname);
    const ref = source.existingProjectRef ?? hosted?.[1] ?? url.host.replace(/[^a-z0-9]+/gi, '-');
    return new ExistingProjectProvisioner({ ref, url: source.existingProjectUrl, anonKey, serviceRoleKey });
  }
  const token = env.SUPABASE_ACCESS_TOKEN?.trim();
  const control = env.LOCAL_STACK_CONTROL_URL?.trim();
  if (!token && control) {
    return new StackControlProvisioner({
      url: control,
      token: env.LOCAL_STACK_CONTROL_TOKEN?.trim() ?? '',
      platformUrl: env.PLATFORM_SUPABASE_URL?.trim(),
    });
  }
  if (!token) return undefined;
  const organizationSlug = source.organization ?? env.SUPABASE_ORGANIZATION_SLUG?.trim();
  if (!organizationSlug) {
    throw new UsageError(
      'new projects need an organization: pass --organization or set SUPABASE_ORGANIZATION_SLUG',
    );
  }
  return new ManagementApiProvisioner({
    baseUrl: source.managementApiUrl,
    accessToken: token,
    organizationSlug,
    region: source.region,
    desiredInstanceSize: source.instanceSize,
    log,
  });
}
