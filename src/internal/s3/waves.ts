/**
 * Many small requests to the store, issued in waves: up to `width` at once, and the next
 * wave only when the whole previous one has answered. Against a store that shares the
 * client's cores, waves cost about half the CPU of a sliding window of the same width
 * (every answer of a wave is handled in one wake-up of the event loop, and a sliding window
 * wakes once per answer); the request count and the bound on requests in flight are the same.
 */
import { Effect } from "effect"

/** `f` over `items` in waves of `width`, results in the order of `items`. */
export const forEach = <A, B, E, R>(
  items: ReadonlyArray<A>,
  f: (item: A) => Effect.Effect<B, E, R>,
  width: number
): Effect.Effect<Array<B>, E, R> =>
  Effect.gen(function*() {
    const out: Array<B> = []
    for (let start = 0; start < items.length; start += width) {
      const wave = yield* Effect.forEach(items.slice(start, start + width), f, { concurrency: "unbounded" })
      for (const b of wave) out.push(b)
    }
    return out
  })
