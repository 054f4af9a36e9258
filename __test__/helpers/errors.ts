// The messages of the Errors a call throws or a Promise rejects with.
import { expect } from 'vitest'

/** The message of the Error `fn` throws (fails the test when it throws none, or a non-Error). */
export function messageOf(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    expect(error).toBeInstanceOf(Error)
    return (error as Error).message
  }
  throw new Error('expected an Error, but nothing was thrown')
}

/** The message of the Error `promise` rejects with (fails the test when it resolves). */
export async function rejectionOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise
  } catch (error) {
    expect(error).toBeInstanceOf(Error)
    return (error as Error).message
  }
  throw new Error('expected the Promise to reject, but it resolved')
}
