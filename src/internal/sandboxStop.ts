/**
 * How a sandbox ends (docs/sandboxes.md, "Committing snapshot mounts"): its processes and
 * mounts go first, then the changes in its snapshot mounts are committed or discarded, then
 * its named volumes are measured.
 *
 * - `stop()` commits (acquire/use/release style: the caller says the use succeeded). The
 *   commit is interruptible; an interrupted `stop()` can be called again and commits what is
 *   left. Once `stop()` has produced an outcome, success or `CommitFailed`, later calls and
 *   the scope return that outcome.
 * - The scope closing without `stop()` decides by its exit: success commits, failure or
 *   interruption discards (the store stays as it was). A commit failure there has no caller
 *   to return to, so it becomes a defect of the scope (the program fails, naming the volumes
 *   and where the sandbox's versions are kept); conflicts are logged as a warning.
 */
import { Effect, Exit, Option, Predicate, Scope } from "effect"
import type { CommitFailed } from "../VolumeError.js"
import * as Snapshot from "./snapshot.js"

/** What the stop of one sandbox needs. */
export interface StopOptions<R, E> {
  readonly sandbox: string
  /** The scope holding the sandbox's processes, mounts and attachment records. */
  readonly scope: Scope.CloseableScope
  /** The read-write snapshot mounts, known once the sandbox started. */
  readonly targets: ReadonlyArray<Snapshot.CommitTarget>
  /** Builds the stop result from the commits (measures the volumes). */
  readonly report: (commits: ReadonlyArray<Snapshot.VolumeCommit>) => Effect.Effect<R, E>
}

/** The sandbox's `stop()` and the release its scope runs. */
export interface Stopper<R, E> {
  readonly stop: Effect.Effect<R, E | CommitFailed>
  readonly release: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
  /** Whether processes were stopped (exec refuses from then on). */
  readonly isStopped: () => boolean
}

const describeConflicts = (sandbox: string, commits: ReadonlyArray<Snapshot.VolumeCommit>): string =>
  `sandbox "${sandbox}": ${
    commits.flatMap((commit) =>
      commit.conflicts.map((c) =>
        `${c.volume}:${c.path} ${c.reason}${Option.match(c.keptAt, { onNone: () => "", onSome: (at) => ` (its version kept at ${at})` })}`
      )
    ).join("; ")
  } were left as other writers made them`

/** Builds the stop logic of one sandbox; `release` must be added to the sandbox's outer scope. */
export const make = <R, E>(options: StopOptions<R, E>): Effect.Effect<Stopper<R, E>> =>
  Effect.gen(function*() {
    const lock = yield* Effect.makeSemaphore(1)
    const state: {
      stopped: boolean
      commits: ReadonlyArray<Snapshot.VolumeCommit>
      outcome: Option.Option<Exit.Exit<R, E | CommitFailed>>
    } = { stopped: false, commits: [], outcome: Option.none() }

    /** Stops the processes, then commits or discards, then reports; the caller holds the lock. */
    const run = (mode: "commit" | "discard") =>
      Effect.gen(function*() {
        state.stopped = true
        // The processes must be gone before the caches are read: never cut short.
        yield* Effect.uninterruptible(Scope.close(options.scope, Exit.void))
        state.commits = mode === "commit" ? yield* Snapshot.commitAll(options.targets, options.sandbox) : []
        return yield* options.report(state.commits)
      })

    /** `run`, whose outcome (but not an interruption) is kept for later calls. */
    const settle = (mode: "commit" | "discard") =>
      Effect.flatten(Effect.tap(Effect.exit(run(mode)), (exit) => Effect.sync(() => void (state.outcome = Option.some(exit)))))

    const stop = lock.withPermits(1)(
      Effect.suspend(() => Option.getOrElse(state.outcome, () => settle("commit")))
    )

    const release = (exit: Exit.Exit<unknown, unknown>) =>
      lock.withPermits(1)(Effect.suspend(() => {
        // `stop()` already reported its outcome to its caller.
        if (Option.isSome(state.outcome)) return Effect.void
        if (Exit.isFailure(exit)) return Effect.ignore(settle("discard"))
        return Effect.interruptible(settle("commit")).pipe(
          Effect.catchIf(Predicate.isTagged("CommitFailed"), (error) => Effect.die(error)),
          Effect.ignore,
          Effect.zipRight(Effect.suspend(() =>
            state.commits.some((commit) => commit.conflicts.length > 0)
              ? Effect.logWarning(describeConflicts(options.sandbox, state.commits))
              : Effect.void
          ))
        )
      }))

    return { stop, release, isStopped: () => state.stopped }
  })
