/** Why an IKE operation failed: `reason` is a stable word for code, the message is for people. */
export class IkeError extends Error {
  override readonly name = 'IkeError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}
