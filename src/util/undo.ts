/**
 * Undoes what a start-up sequence did so far, last first: on a failed start
 * and on stop. A step that fails to undo does not keep the others from
 * running, and each runs once: the list is emptied as it goes.
 */
export function runUndo(undo: (() => void)[]): void {
  for (const f of undo.splice(0).reverse()) {
    try {
      f();
    } catch {
      // keep undoing the rest
    }
  }
}
