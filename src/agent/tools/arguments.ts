/**
 * The model's arguments checked against the tool's JSON-Schema parameters before anything is
 * sent: the client's endpoint only gets what its config promised, and the model gets an error it
 * can act on (which field, what is wrong) instead of whatever the endpoint makes of bad input.
 * agents-js validates only zod schemas; a client's tools are JSON Schema, so ajv does it.
 */

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import { LRUCache } from 'lru-cache';

// allErrors: the model fixes every field in one retry. strict off: a client's schema may carry
// keywords for the model (examples, titles) that ajv does not know. addUsedSchema off: ajv would
// otherwise keep every schema it compiles (and refuse a second one with the same $id); each job
// request parses the tools config afresh, so the compiled validators are kept here instead,
// by the schema's text, a bounded number of them.
const ajv = new Ajv({ allErrors: true, strict: false, addUsedSchema: false });
const compiled = new LRUCache<string, ValidateFunction | { problem: string }>({ max: 500 });

function validatorOf(parameters: object): ValidateFunction | { problem: string } {
  const key = JSON.stringify(parameters);
  let v = compiled.get(key);
  if (!v) {
    try {
      v = ajv.compile(parameters);
    } catch (err) {
      v = { problem: (err as Error).message };
    }
    compiled.set(key, v);
  }
  return v;
}

/** Why a tool's schema cannot check anything (ajv cannot compile it), or undefined when it can. */
export function schemaProblem(parameters: object): string | undefined {
  const v = validatorOf(parameters);
  return typeof v === 'function' ? undefined : v.problem;
}

function describe(e: ErrorObject): string {
  const where = e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : 'the arguments';
  if (e.keyword === 'required')
    return `${(e.params as { missingProperty: string }).missingProperty} is missing`;
  if (e.keyword === 'additionalProperties')
    return `${(e.params as { additionalProperty: string }).additionalProperty} is not a parameter of this tool`;
  return `${where} ${e.message ?? 'is not valid'}`;
}

/** What is wrong with the arguments, one phrase per problem; empty when they fit the schema. */
export function argumentProblems(parameters: object, args: unknown): string[] {
  const validate = validatorOf(parameters);
  // The config refuses a schema that does not compile, so a session never holds one.
  if (typeof validate !== 'function')
    return [`the tool's parameters are not a valid JSON Schema: ${validate.problem}`];
  if (validate(args)) return [];
  return [...new Set((validate.errors ?? []).map(describe))];
}
