import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { z } from 'zod';

/**
 * A client's MCP server on loopback, built with the official SDK (streamable HTTP, stateless:
 * one server and transport per request, as the SDK's own example does). It serves one tool,
 * `find_customer`, and records each request's method and headers.
 */
export async function startMcpServer(): Promise<{
  url: string;
  requests: Array<{ method: string; headers: Record<string, string | string[] | undefined> }>;
  close(): Promise<void>;
}> {
  const requests: Array<{ method: string; headers: Record<string, string | string[] | undefined> }> = [];
  const http = createServer(async (req, res) => {
    requests.push({ method: req.method ?? 'GET', headers: { ...req.headers } });
    const mcp = new McpServer({ name: 'acme-crm', version: '1.0.0' });
    mcp.registerTool(
      'find_customer',
      {
        description: 'Finds a customer of Acme by e-mail address',
        inputSchema: { email: z.string().describe("the customer's e-mail address") },
      },
      async ({ email }) => ({
        content: [{ type: 'text', text: `Customer ${email}: Ada Lovelace, gold member since 2019` }],
      }),
    );
    const transport = new StreamableHTTPServerTransport({
      sessionIdGenerator: undefined,
      enableJsonResponse: true,
    });
    res.on('close', () => {
      void transport.close();
      void mcp.close();
    });
    await mcp.connect(transport);
    await transport.handleRequest(req, res);
  });
  await new Promise<void>((resolve) => http.listen(0, '127.0.0.1', () => resolve()));
  const port = (http.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/mcp`,
    requests,
    async close() {
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}
