/**
 * A command's standard input fed from a stream while it runs (interactive sessions),
 * with backpressure: the next chunk is read only once the pipe took the last one.
 */
import type { Writable } from "node:stream"
import { Effect, Stream } from "effect"

/** Writes every chunk of `input` to `pipe`, then closes it. A pipe the command closed ends the feed quietly. */
export const feed = <E>(input: Stream.Stream<Uint8Array, E>, pipe: Writable): Effect.Effect<void> =>
  Stream.runForEach(input, (chunk) =>
    Effect.async<void, "Closed">((resume) => {
      if (pipe.destroyed || pipe.writableEnded) return resume(Effect.fail("Closed"))
      pipe.write(chunk, (error) => resume(error ? Effect.fail("Closed") : Effect.void))
    })).pipe(
      Effect.ensuring(Effect.sync(() => pipe.end())),
      Effect.ignore
    )
