/**
 * Undoes what a start-up sequence did so far, last first: on a failed start
 * and on stop. A step that fails to undo does not keep the others from
 * running (`failed` hears of it, so that a route left behind or missing is
 * in the log), and each runs once: the list is emptied as it goes.
 */
export function runUndo(undo: (() => void)[], failed?: (e: Error) => void): void {
  for (const f of undo.splice(0).reverse()) {
    try {
      f();
    } catch (e) {
      failed?.(e as Error);
    }
  }
}
