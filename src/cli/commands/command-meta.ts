/** A command's usage line and one-line description, shared by its listing and its own help. */
export interface CommandMeta {
  readonly usage: string;
  readonly describe: string;
}
