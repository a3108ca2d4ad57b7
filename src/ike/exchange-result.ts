/** What the responder side of an exchange returns: the response payloads, and what to do once it is sent. */
import type { Payload } from './payloads.ts';

export interface ExchangeResult {
  readonly payloads: readonly Payload[];
  readonly after?: () => void;
}
