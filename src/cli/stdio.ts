/**
 * Raw bytes to and from the standard streams, with backpressure.
 */
import { Effect, Stream } from "effect"
import { OutputClosed } from "./errors.js"

// A reader that goes away (`volumes fs v cat f | head`) makes stdout emit "error"; without
// a listener Node would crash. The failed write below reports it as `OutputClosed`.
process.stdout.on("error", () => {})

/** Writes one chunk to stdout, waiting while its buffer is full; fails with `OutputClosed` when the reader went away. */
export const writeStdout = (chunk: Uint8Array | string): Effect.Effect<void, OutputClosed> =>
  Effect.async<void, OutputClosed>((resume) => {
    if (process.stdout.destroyed || process.stdout.writableEnded) return resume(Effect.fail(new OutputClosed()))
    process.stdout.write(chunk, (error) => resume(error ? Effect.fail(new OutputClosed()) : Effect.void))
  })

/** Every byte of stdin. */
export const stdin: Stream.Stream<Uint8Array> = Stream.fromAsyncIterable(
  process.stdin as AsyncIterable<Uint8Array>,
  (cause) => cause
).pipe(Stream.orDie)
