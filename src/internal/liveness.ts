/**
 * Whether the process that owns a record is still running. A pid alone is not an
 * identity (pids are reused), so owners are recorded as pid + start time, the
 * `starttime` field (22) of `/proc/<pid>/stat` in clock ticks since boot.
 */
import { Effect } from "effect"
import { readFileSync } from "node:fs"

/** A running process, identified across pid reuse. */
export interface ProcessId {
  readonly pid: number
  /** Start time in clock ticks since boot; 0 where `/proc` is unavailable. */
  readonly start: number
}

type ProcState =
  | { readonly _tag: "Running"; readonly start: number }
  | { readonly _tag: "Gone" }
  | { readonly _tag: "Unknown" }

/** Reads `/proc/<pid>/stat`; zombies count as gone (they will never release anything). */
const readProcStat = (pid: number): ProcState => {
  let text: string
  try {
    text = readFileSync(`/proc/${pid}/stat`, "latin1")
  } catch {
    // No such entry: the process is gone, unless this system has no /proc at all.
    return procAvailable() ? { _tag: "Gone" } : { _tag: "Unknown" }
  }
  // `comm` (field 2) may contain spaces and parentheses: fields resume after the last ")".
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ")
  const state = fields[0]
  const start = Number(fields[19])
  if (state === "Z" || state === "X" || state === "x") return { _tag: "Gone" }
  return Number.isFinite(start) ? { _tag: "Running", start } : { _tag: "Unknown" }
}

let procMounted: boolean | undefined
const procAvailable = (): boolean => {
  if (procMounted === undefined) {
    try {
      readFileSync("/proc/self/stat")
      procMounted = true
    } catch {
      procMounted = false
    }
  }
  return procMounted
}

/** Fallback without `/proc`: signal 0 tells whether the pid exists. */
const signalProbe = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

const isRunning = (owner: ProcessId): boolean => {
  if (!Number.isSafeInteger(owner.pid) || owner.pid <= 0) return false
  const state = readProcStat(owner.pid)
  switch (state._tag) {
    case "Running":
      return owner.start === 0 || state.start === owner.start
    case "Gone":
      return false
    case "Unknown":
      return signalProbe(owner.pid)
  }
}

let self: ProcessId | undefined

/** This process. */
export const current: Effect.Effect<ProcessId> = Effect.sync(() => {
  if (self === undefined) {
    const state = readProcStat(process.pid)
    self = { pid: process.pid, start: state._tag === "Running" ? state.start : 0 }
  }
  return self
})

/** Whether `owner` is still the same running process. */
export const isAlive = (owner: ProcessId): Effect.Effect<boolean> => Effect.sync(() => isRunning(owner))

/** Whether some process with this pid runs (no start time known, e.g. from a temp file name). */
export const isPidAlive = (pid: number): Effect.Effect<boolean> => Effect.sync(() => isPidAliveSync(pid))

/** {@link isPidAlive}, for use inside a synchronous host call. */
export const isPidAliveSync = (pid: number): boolean => isRunning({ pid, start: 0 })
