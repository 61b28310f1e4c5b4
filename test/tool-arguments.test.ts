// A tool's JSON Schema is compiled once per distinct schema, however often a config is parsed
// (each job request parses it afresh): a schema with an $id stays valid the second time.
import { describe, expect, it } from 'vitest';
import { argumentProblems, schemaProblem } from '../src/agent/tools/arguments.js';

const schema = () => ({
  $id: 'https://acme.example/schemas/order.json',
  type: 'object',
  properties: { order: { type: 'string' } },
  required: ['order'],
});

describe('tool arguments', () => {
  it('a schema with an $id, parsed again as a new object, is still valid and still checks', () => {
    for (let i = 0; i < 3; i++) expect(schemaProblem(schema())).toBeUndefined();
    expect(argumentProblems(schema(), {})).toEqual(['order is missing']);
    expect(argumentProblems(schema(), { order: 'A-1' })).toEqual([]);
  });

  it('a schema that does not compile says why, every time', () => {
    const bad = () => ({ type: 'object', properties: { n: { type: 'strnig' } } });
    expect(schemaProblem(bad())).toMatch(/^schema is invalid: data\/properties\/n\/type/);
    expect(schemaProblem(bad())).toMatch(/^schema is invalid/);
  });
});
