import { type LocalStack, type StackOptions, startStack } from '../../src/stack/stack.js';
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
