/**
 * The model's arguments checked against the tool's JSON-Schema parameters before anything is
 * sent: the client's endpoint only gets what its config promised, and the model gets an error it
 * can act on (which field, what is wrong) instead of whatever the endpoint makes of bad input.
 * agents-js validates only zod schemas; a client's tools are JSON Schema, so ajv does it.
 */

import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';

// allErrors: the model fixes every field in one retry. strict off: a client's schema may carry
// keywords for the model (examples, titles) that ajv does not know.
const ajv = new Ajv({ allErrors: true, strict: false });
const compiled = new WeakMap<object, ValidateFunction>();

/** Why a tool's schema cannot check anything (ajv cannot compile it), or undefined when it can. */
export function schemaProblem(parameters: object): string | undefined {
  try {
    ajv.compile(parameters);
    return undefined;
  } catch (err) {
    return (err as Error).message;
  }
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
  let validate = compiled.get(parameters);
  if (!validate) {
    validate = ajv.compile(parameters);
    compiled.set(parameters, validate);
  }
  if (validate(args)) return [];
  return [...new Set((validate.errors ?? []).map(describe))];
}
