/**
 * Child processes as Effect resources. Every child gets its own process group, so
 * releasing it kills the whole group (the command and whatever it started that stayed
 * in the group), also across PID namespaces.
 */
import type { ChildProcess } from "node:child_process"
import { spawn } from "node:child_process"
import { readdirSync, readFileSync } from "node:fs"
import { constants } from "node:os"
import { Clock, Deferred, Effect, Stream } from "effect"
import type { ExecEvent } from "../../Sandbox.js"
import { ExecEvent as Events } from "../../Sandbox.js"
import { SandboxError } from "../../VolumeError.js"
import { feed } from "./stdin.js"

/** Sends `signal` to the process group led by `child`; a group that is gone is fine. */
export const killGroup = (child: ChildProcess, signal: NodeJS.Signals = "SIGKILL"): void => {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    // ESRCH: nothing left to kill.
  }
}

/**
 * Whether a live (non-zombie) process of group `pgid` remains. SIGKILL is delivered
 * asynchronously, and members in the sandbox's PID namespace outlive the group leader by
 * a moment, so a release waits for this to turn false.
 */
const groupHasLiveMembers = (pgid: number): boolean => {
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8")
      // Fields after the parenthesised command: state ppid pgrp ...
      const [state, , pgrp] = stat.slice(stat.lastIndexOf(")") + 2).split(" ")
      if (Number(pgrp) === pgid && state !== "Z" && state !== "X") return true
    } catch {
      // The process went away while we looked.
    }
  }
  return false
}

/** Waits (bounded, by the Effect clock) until every member of the group led by `child` is gone. */
const awaitGroupGone = (child: ChildProcess): Effect.Effect<void> =>
  child.pid === undefined ? Effect.void : Effect.gen(function*() {
    const deadline = (yield* Clock.currentTimeMillis) + 5_000
    while (groupHasLiveMembers(child.pid!) && (yield* Clock.currentTimeMillis) < deadline) {
      killGroup(child)
      yield* Effect.sleep("10 millis")
    }
  })

/** The exit status a shell would report: the code, or 128 + the signal number. */
export const exitStatus = (code: number | null, signal: NodeJS.Signals | null): number =>
  code ?? (signal === null ? -1 : 128 + (constants.signals[signal] ?? 0))

/** How long output is still read after the command exited while something holds its pipes. */
const OUTPUT_GRACE_MS = 100

export interface RunOptions {
  readonly env: Readonly<Record<string, string>>
  readonly stdin: string | Uint8Array | Stream.Stream<Uint8Array> | undefined
  /** For errors: which sandbox, and what failed. */
  readonly sandbox: string
}

/** Where a child's output and end go. */
interface Sink {
  /** A chunk of output; a returned promise pauses that pipe until it settles (backpressure). */
  readonly output: (kind: "Stdout" | "Stderr", data: Buffer) => PromiseLike<unknown> | void
  /** The exit status, once the output is read. */
  readonly exit: (exitCode: number) => void
  readonly fail: (error: SandboxError) => void
}

/**
 * Starts `file args` with its output going to `sink`; ending the scope before the exit kills
 * the process group and waits until every member is gone.
 */
const launch = (file: string, args: ReadonlyArray<string>, options: RunOptions, sink: Sink) =>
  Effect.acquireRelease(
    Effect.try({
      try: () => {
        const child = spawn(file, [...args], {
          env: options.env,
          stdio: ["pipe", "pipe", "pipe"],
          detached: true
        })
        const state = { exited: false, child, gone: new Promise<void>((resolve) => child.once("exit", () => resolve())) }
        child.on("error", (error) => {
          state.exited = true
          sink.fail(new SandboxError({ sandbox: options.sandbox, reason: "Exec", message: `cannot run ${file}: ${error.message}` }))
        })
        // Backpressure: a pipe is paused until the sink took its last chunk, so a command
        // writing faster than the consumer reads waits on a full pipe instead of filling our
        // memory.
        let undelivered = 0
        const forward = (pipe: NodeJS.ReadableStream, kind: "Stdout" | "Stderr") =>
          pipe.on("data", (data: Buffer) => {
            const taken = sink.output(kind, data)
            if (taken === undefined) return
            pipe.pause()
            undelivered++
            const resume = () => {
              undelivered--
              pipe.resume()
            }
            taken.then(resume, resume)
          })
        forward(child.stdout, "Stdout")
        forward(child.stderr, "Stderr")
        let finished = false
        const finish = (code: number | null, signal: NodeJS.Signals | null) => {
          if (finished) return
          finished = true
          state.exited = true
          sink.exit(exitStatus(code, signal))
        }
        child.on("close", finish)
        child.on("exit", (code, signal) => {
          // A background process the command started may keep the output pipes open
          // forever; the command is done when it exits. What it wrote before is
          // already in the pipes and is read within the grace period.
          // Output the consumer has not taken yet is not dropped: wait while it is.
          const afterGrace = () => {
            if (finished) return
            if (undelivered > 0) return void setTimeout(afterGrace, OUTPUT_GRACE_MS).unref()
            child.stdout.destroy()
            child.stderr.destroy()
            finish(code, signal)
          }
          setTimeout(afterGrace, OUTPUT_GRACE_MS).unref()
        })
        child.stdin.on("error", () => {
          // EPIPE: the command did not read its input; its exit status tells the story.
        })
        if (options.stdin === undefined) child.stdin.end()
        else if (typeof options.stdin === "string" || options.stdin instanceof Uint8Array) child.stdin.end(options.stdin)
        return state
      },
      catch: (error) =>
        new SandboxError({ sandbox: options.sandbox, reason: "Exec", message: `cannot run ${file}: ${String(error)}` })
    }),
    (state) =>
      state.exited || state.child.pid === undefined ? Effect.void : Effect.zipRight(
        Effect.sync(() => killGroup(state.child)),
        // Wait until it is really gone, so nothing of it outlives the scope.
        Effect.promise(() => state.child.exitCode !== null || state.child.signalCode !== null ? Promise.resolve() : state.gone)
      ).pipe(Effect.zipRight(awaitGroupGone(state.child)))
  ).pipe(
    Effect.tap((state) =>
      Stream.StreamTypeId in Object(options.stdin)
        ? Effect.forkScoped(feed(options.stdin as Stream.Stream<Uint8Array>, state.child.stdin))
        : Effect.void
    )
  )

/**
 * Runs `file args` and streams its output and exit. Interrupting the stream (or ending
 * its scope before the exit) kills the process group.
 */
export const run = (file: string, args: ReadonlyArray<string>, options: RunOptions): Stream.Stream<ExecEvent, SandboxError> =>
  Stream.asyncScoped<ExecEvent, SandboxError>((emit) =>
    launch(file, args, options, {
      output: (kind, data) => emit.single(kind === "Stdout" ? Events.Stdout({ data }) : Events.Stderr({ data })),
      exit: (exitCode) => {
        void emit.single(Events.Exit({ exitCode }))
        void emit.end()
      },
      fail: (error) => void emit.fail(error)
    })
  )

/** What a command wrote, and its exit status. */
export interface Collected {
  readonly exitCode: number
  readonly stdout: ReadonlyArray<Uint8Array>
  readonly stderr: ReadonlyArray<Uint8Array>
}

/**
 * Runs `file args` to its end and keeps all its output: {@link run} without a stream
 * (whose per-chunk machinery cost ≈1.5 ms per short command). Interrupting it kills the
 * process group, as ending {@link run}'s stream does.
 */
export const collect = (file: string, args: ReadonlyArray<string>, options: RunOptions): Effect.Effect<Collected, SandboxError> =>
  Effect.scoped(Effect.gen(function*() {
    const done = yield* Deferred.make<number, SandboxError>()
    const stdout: Array<Uint8Array> = []
    const stderr: Array<Uint8Array> = []
    yield* launch(file, args, options, {
      output: (kind, data) => void (kind === "Stdout" ? stdout : stderr).push(data),
      exit: (exitCode) => Deferred.unsafeDone(done, Effect.succeed(exitCode)),
      fail: (error) => Deferred.unsafeDone(done, Effect.fail(error))
    })
    return { exitCode: yield* Deferred.await(done), stdout, stderr }
  }))
