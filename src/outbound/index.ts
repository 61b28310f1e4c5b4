/**
 * Calls to URLs that clients wrote: the guard (addresses.ts), the client (client.ts), the
 * signature (signing.ts). Import from here.
 */
export { type AddressVerdict, Allowlist, classify } from './addresses.js';
export {
  DEFAULTS as OUTBOUND_DEFAULTS,
  type HttpMethod,
  OutboundClient,
  OutboundError,
  type OutboundErrorKind,
  type OutboundOptions,
  type OutboundRequest,
  type OutboundResponse,
  type Resolver,
  systemResolver,
} from './client.js';
export {
  SIGNATURE_HEADER,
  SIGNATURE_TOLERANCE_S,
  type SignatureCheck,
  signatureHeader,
  verifySignature,
} from './signing.js';
