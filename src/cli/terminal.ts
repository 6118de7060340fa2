/**
 * `volumes run -it`: this process's terminal lent to a command in a sandbox. Keys go to it
 * byte for byte (raw mode, restored when the scope closes, also on failure or Ctrl-C in
 * the sandbox), and window-size changes follow it (see src/internal/namespace/pty.ts).
 */
import type { Scope } from "effect"
import { Effect, Stream } from "effect"
import * as Pty from "../internal/namespace/pty.js"
import { UsageError } from "./errors.js"

/** The size of this process's terminal (24x80 when there is none). */
export const windowSize = (): Pty.WindowSize => ({
  rows: process.stdout.rows || process.stderr.rows || 24,
  cols: process.stdout.columns || process.stderr.columns || 80
})

/**
 * Keys as they are typed. Not Node's async iterator of stdin: its `return()` waits for a
 * pending read, so ending the session would hang until the next key.
 */
const keys: Stream.Stream<Uint8Array> = Stream.async<Uint8Array>((emit) => {
  const onData = (chunk: Buffer) => void emit.single(chunk)
  const onEnd = () => void emit.end()
  process.stdin.on("data", onData)
  process.stdin.once("end", onEnd)
  process.stdin.resume()
  return Effect.sync(() => {
    process.stdin.off("data", onData)
    process.stdin.off("end", onEnd)
    process.stdin.pause()
  })
})

const resizes: Stream.Stream<Uint8Array> = Stream.async<Uint8Array>((emit) => {
  const onResize = () => void emit.single(Pty.resize(windowSize()))
  process.stdout.on("resize", onResize)
  return Effect.sync(() => void process.stdout.off("resize", onResize))
})

/**
 * The input of an interactive terminal session: keys and resize messages, for as long as
 * the scope is open. Fails when stdin is not a terminal (as `docker run -it` does).
 */
export const interactiveInput: Effect.Effect<Stream.Stream<Uint8Array>, UsageError, Scope.Scope> = Effect.gen(function*() {
  if (process.stdin.isTTY !== true) {
    return yield* new UsageError({
      message: "the input is not a terminal: -t needs one (use -i alone to pass piped input)",
      command: "volumes run"
    })
  }
  yield* Effect.acquireRelease(
    Effect.sync(() => process.stdin.setRawMode(true)),
    () => Effect.sync(() => process.stdin.setRawMode(false))
  )
  return Stream.merge(keys, resizes, { haltStrategy: "left" })
})

/** `cmd args` on a pseudo-terminal of this terminal's size. */
export const command = (cmd: string, args: ReadonlyArray<string>) => Pty.command(cmd, args, windowSize())
