import { z } from 'zod';
import { HOSTING_TYPES } from './types.js';

/**
 * The platform database's rows as zod schemas, nullability as the migrations declare it: one
 * definition for the worker's directory (which reads a few columns) and the operators' tools
 * (which read them all). Credentials are in here; logs and printed output never show them.
 */

/** clients.provisioning_status, as its CHECK constraint (migrations/platform/004) allows. */
export const PROVISIONING_STATUSES = ['pending', 'provisioning', 'ready', 'failed', 'suspended'] as const;
export type ProvisioningStatus = (typeof PROVISIONING_STATUSES)[number];

/** A `clients` row (migrations/platform). */
export const clientRowSchema = z.object({
  id: z.string(),
  name: z.string(),
  tier: z.string(),
  hosting_type: z.enum(HOSTING_TYPES),
  max_sidekicks: z.number().int().nullable(),
  tier_features: z.unknown(),
  /** Per-client switches (migrations/platform/006), read by tenancy/client-settings.ts. */
  settings: z.unknown(),
  supabase_url: z.string().nullable(),
  supabase_anon_key: z.string().nullable(),
  supabase_service_role_key: z.string().nullable(),
  supabase_project_ref: z.string().nullable(),
  shared_pool_id: z.string().nullable(),
  provisioning_status: z.string(),
  provisioning_error: z.string().nullable(),
  provisioning_completed_at: z.string().nullable(),
  migration_status: z.string(),
  migration_state: z.record(z.string(), z.unknown()).nullable(),
  migration_started_at: z.string().nullable(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type ClientRow = z.infer<typeof clientRowSchema>;

/** A `shared_pool_config` row. */
export const poolRowSchema = z.object({
  id: z.string(),
  pool_name: z.string(),
  supabase_url: z.string(),
  supabase_service_role_key: z.string(),
  supabase_anon_key: z.string().nullable(),
  supabase_project_ref: z.string().nullable(),
  max_clients: z.number().int(),
  current_client_count: z.number().int(),
  is_active: z.boolean(),
  jwt_algorithm: z.enum(['HS256', 'ES256']),
  jwt_secret: z.string().nullable(),
  jwt_private_key: z.record(z.string(), z.unknown()).nullable(),
  jwt_key_id: z.string().nullable(),
});
export type PoolRow = z.infer<typeof poolRowSchema>;

/** The PostgREST select list of a schema (or of the columns picked from it). */
export function columnsOf(schema: z.ZodObject): string {
  return Object.keys(schema.shape).join(',');
}
