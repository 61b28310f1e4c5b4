/**
 * The tools part of the session plan, pure: which of the sidekick's tools_config entries a session
 * gets, and why each other one is left out. The tier decides through two features (tiers.ts):
 * `max_tools` counts the entries (HTTP tools and MCP servers, in the order tools_config lists
 * them: the first max_tools are kept), and MCP servers need `custom_integrations` (paragon).
 * `api_access_enabled` gates nothing here: it is about clients calling the platform's API, not the
 * sidekick calling theirs. The built-in end_call is always there and counts against nothing.
 */

import type { FeatureName, TierFeatures } from '../../tenancy/tiers.js';
import {
  type ConfigProblem,
  type HttpTool,
  type McpServer,
  readToolsConfig,
  type ToolEntry,
} from './config.js';

export interface ToolsDecision {
  http: HttpTool[];
  mcp: McpServer[];
  /** Entries the session does not get, each with why (invalid config, the limit, the tier). */
  leftOut: ConfigProblem[];
  /** One line for the log and `agents tools list`. */
  reason: string;
}

export function decideTools(input: {
  features: TierFeatures;
  /** Where a feature's value came from, in words ("the adventurer tier"). */
  source: (feature: FeatureName) => string;
  toolsConfig: unknown;
  /**
   * The names of the client's secrets, when known (`agents tools list`): a tool naming one that
   * is not set is left out, as the session leaves it out when it loads the secrets.
   */
  secretsSet?: { clientId: string; names: ReadonlySet<string> };
}): ToolsDecision {
  const { features, source } = input;
  const { config, problems } = readToolsConfig(input.toolsConfig);
  const leftOut: ConfigProblem[] = [...problems];
  const entries: ToolEntry[] = [
    ...config.tools.map((tool) => ({ kind: 'http' as const, tool })),
    ...config.mcp_servers.map((server) => ({ kind: 'mcp' as const, server })),
  ];
  const allowed = entries.filter((e, i) => {
    if (e.kind === 'mcp' && !features.custom_integrations) {
      leftOut.push({
        entry: `mcp_servers[${i - config.tools.length}]`,
        name: e.server.name,
        problem: `MCP servers need custom_integrations, which is not allowed by ${source('custom_integrations')}`,
      });
      return false;
    }
    return true;
  });
  const max = features.max_tools;
  const withinLimit = max === null ? allowed : allowed.slice(0, max);
  for (const e of allowed.slice(withinLimit.length)) {
    const name = e.kind === 'http' ? e.tool.name : e.server.name;
    leftOut.push({
      entry: e.kind === 'http' ? 'tools' : 'mcp_servers',
      name,
      problem: `beyond max_tools (${max}, from ${source('max_tools')}): only the first ${max} are used`,
    });
  }
  // After the limit, as in a session: a tool without its secret does not make room for the next.
  const { secretsSet } = input;
  const kept = withinLimit.filter((e) => {
    const secret = e.kind === 'http' ? e.tool.secret : e.server.secret;
    if (!secretsSet || !secret || secretsSet.names.has(secret.name)) return true;
    leftOut.push({
      entry: e.kind === 'http' ? 'tools' : 'mcp_servers',
      name: e.kind === 'http' ? e.tool.name : e.server.name,
      problem: `its secret ${secret.name} is not set: \`sidekick secrets set --client ${secretsSet.clientId} --name ${secret.name}\``,
    });
    return false;
  });
  const limit =
    max === null ? `unlimited by ${source('max_tools')}` : `max_tools ${max} from ${source('max_tools')}`;
  return {
    http: kept.flatMap((e) => (e.kind === 'http' ? [e.tool] : [])),
    mcp: kept.flatMap((e) => (e.kind === 'mcp' ? [e.server] : [])),
    leftOut,
    reason: `${kept.length} of ${entries.length + problems.filter((p) => p.entry !== 'tools_config').length} configured tools (${limit})`,
  };
}
