import { type LocalStack, type StackOptions, startStack } from '../../src/stack/stack.js';
import { ClientConnectionManager, type PlatformConnectionOptions } from '../../src/tenancy/connections.js';
import { createSupabase } from '../../src/tenancy/supabase.js';
import { REAL_SERVER_URL } from './db.js';

/** The local stack with the demo clients, on PGlite or (STACK_POSTGRES_URL) the real server. */
export function startTestStack(opts: StackOptions = {}): Promise<LocalStack> {
  return startStack({ seed: true, serverUrl: REAL_SERVER_URL, ...opts });
}

/** A service-role supabase-js client of the stack's platform project (the operator's view). */
export function platformAdmin(stack: LocalStack) {
  return createSupabase(stack.platform.url, stack.platform.serviceRoleKey);
}

/** The worker's connections to a stack's platform, assembled as the worker assembles them. */
export function connectionsTo(
  stack: Pick<LocalStack, 'platform'>,
  opts: Partial<PlatformConnectionOptions> = {},
): ClientConnectionManager {
  return ClientConnectionManager.forPlatform({
    url: stack.platform.url,
    serviceRoleKey: stack.platform.serviceRoleKey,
    ttlMs: 60_000,
    maxProjects: 10,
    ...opts,
  });
}
