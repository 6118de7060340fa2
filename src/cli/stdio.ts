/**
 * Raw bytes to and from the standard streams, with backpressure.
 */
import { Effect, Stream } from "effect"

/** Writes one chunk to stdout, waiting while its buffer is full. A closed pipe ends quietly. */
export const writeStdout = (chunk: Uint8Array): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    if (process.stdout.destroyed) return resume(Effect.void)
    process.stdout.write(chunk, () => resume(Effect.void))
  })

/** Every byte of stdin. */
export const stdin: Stream.Stream<Uint8Array> = Stream.fromAsyncIterable(
  process.stdin as AsyncIterable<Uint8Array>,
  (cause) => cause
).pipe(Stream.orDie)

// A reader that goes away (`volumes fs v cat f | head`) is not an error of ours.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0)
})
