/**
 * Resource limits of a sandbox: one cgroup per sandbox and controller (memory, cpu, pids),
 * a child of this process's own cgroup, on cgroup v2 where the host enables the controller
 * there and on the controller's v1 hierarchy otherwise. The sandbox's processes join it
 * (bubblewrap through the launch helper, each exec through the exec helper); it is removed
 * when the sandbox's scope closes, and by the keeper when our process died.
 */
import { randomBytes } from "node:crypto"
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from "node:fs"
import { writeFile } from "node:fs/promises"
import { availableParallelism, totalmem } from "node:os"
import { join } from "node:path"
import { Effect, Option } from "effect"
import type { SandboxLimits } from "../../Sandbox.js"
import { SandboxError, Unsupported } from "../../VolumeError.js"

export type Controller = "memory" | "cpu" | "pids"

const CONTROLLERS: ReadonlyArray<Controller> = ["memory", "cpu", "pids"]

interface Hierarchy {
  readonly version: 1 | 2
  /** This process's cgroup directory in it: sandbox cgroups are created inside. */
  readonly parent: string
}

/** Default pids limit: enough for builds and test runners, far below the host's pid space. */
export const DEFAULT_PIDS = 1024

/** Default memory limit in MiB: half the host's memory, at most 2 GiB. */
export const defaultMemoryMib = (): number => Math.min(2048, Math.floor(totalmem() / (2 * 1024 * 1024)))

/** The CFS period the cpu limit is expressed in. */
const CPU_PERIOD_US = 100_000

const readText = (path: string): Option.Option<string> => {
  try {
    return Option.some(readFileSync(path, "utf8"))
  } catch {
    return Option.none()
  }
}

/** Where each controller can be used, from this process's mounts and cgroups. */
const detect = (): ReadonlyMap<Controller, Hierarchy> => {
  const found = new Map<Controller, Hierarchy>()
  const own = new Map<string, string>() // "memory" or "" (v2) -> own path
  for (const line of Option.getOrElse(readText("/proc/self/cgroup"), () => "").split("\n")) {
    const [, list, path] = line.split(":")
    if (list === undefined || path === undefined) continue
    for (const name of list === "" ? [""] : list.split(",")) own.set(name, path)
  }
  const v1: Array<[Controller, Hierarchy]> = []
  for (const line of Option.getOrElse(readText("/proc/self/mountinfo"), () => "").split("\n")) {
    const [mountFields, fsFields] = line.split(" - ")
    if (mountFields === undefined || fsFields === undefined) continue
    const [, , , root, mountPoint] = mountFields.split(" ")
    const [fstype, , superOptions] = fsFields.split(" ")
    if (root === undefined || mountPoint === undefined) continue
    const inside = (path: string | undefined) =>
      path === undefined || !path.startsWith(root) ? undefined : join(mountPoint, path.slice(root.length))
    if (fstype === "cgroup2") {
      const parent = inside(own.get(""))
      if (parent === undefined) continue
      const enabled = Option.getOrElse(readText(join(parent, "cgroup.subtree_control")), () => "").split(/\s+/)
      const offered = Option.getOrElse(readText(join(parent, "cgroup.controllers")), () => "").split(/\s+/)
      for (const controller of CONTROLLERS) {
        if (enabled.includes(controller) || (offered.includes(controller) && enable(parent, controller))) {
          found.set(controller, { version: 2, parent })
        }
      }
    } else if (fstype === "cgroup") {
      const options = (superOptions ?? "").split(",")
      for (const controller of CONTROLLERS) {
        const parent = options.includes(controller) ? inside(own.get(controller)) : undefined
        if (parent !== undefined && existsSync(parent)) v1.push([controller, { version: 1, parent }])
      }
    }
  }
  for (const [controller, hierarchy] of v1) if (!found.has(controller)) found.set(controller, hierarchy)
  return found
}

/** Enables a v2 controller for our children; refused while our own cgroup has processes. */
const enable = (parent: string, controller: Controller): boolean => {
  try {
    writeFileSync(join(parent, "cgroup.subtree_control"), `+${controller}`)
    return true
  } catch {
    return false
  }
}

let detected: ReadonlyMap<Controller, Hierarchy> | undefined
const hierarchies = (): ReadonlyMap<Controller, Hierarchy> => (detected ??= detect())

/** Sandbox cgroups are named after the process that started them, like their staging directories. */
export const leafPrefix = (owner: number): string => `effect-volumes-${owner}-`

/** The directories sandbox cgroups are created in (for checks that none is left). */
export const parents = (): ReadonlyArray<string> => [...new Set([...hierarchies().values()].map((h) => h.parent))]

/**
 * Starts, ahead of time, the wait a cgroup join may have to do. A process moves between
 * cgroups under the kernel's global threadgroup lock, taken for writing; when nobody took it
 * for about one RCU grace period, the first writer waits a grace period while readers
 * switch to the slow path (≈10-13 ms measured on this kind of host, cgroup v1), and the
 * next writers within a grace period of the last one do not. Re-joining our own cgroup (a
 * move that changes nothing) pays that wait in a thread-pool thread while the sandbox is
 * prepared, so the launch helper's join just after finds the lock ready. Best effort: a
 * failure changes nothing and is ignored.
 */
export const warmUpJoin = (): Promise<void> => {
  const first = hierarchies().values().next()
  if (first.done === true) return Promise.resolve()
  return writeFile(join(first.value.parent, "cgroup.procs"), `${process.pid}\n`).catch(() => {
    // Not permitted here (or a v2 cgroup with controllers enabled): the join just waits.
  })
}

/** The limits a sandbox gets: the requested ones, else the defaults the host can enforce. */
export interface Resolved {
  readonly memoryMib: Option.Option<number>
  readonly cpus: Option.Option<number>
  readonly pids: Option.Option<number>
  readonly controllers: ReadonlyArray<Controller>
}

const BACKEND = "namespace"

/** Checks what the host offers: an explicit limit without its controller is `Unsupported`. */
export const resolve = (limits: SandboxLimits): Effect.Effect<Resolved, Unsupported> =>
  Effect.gen(function*() {
    const available = hierarchies()
    const missing = (what: string, controller: Controller) =>
      new Unsupported({
        operation: `${what} (this host has no usable ${controller} cgroup controller: neither enabled for ` +
          `this process's cgroup on cgroup v2 nor mounted as a v1 hierarchy)`,
        backend: BACKEND
      })
    const explicit: Array<[Option.Option<number>, Controller, string]> = [
      [limits.memoryMib, "memory", `memory(${Option.getOrElse(limits.memoryMib, () => 0)} MiB)`],
      [limits.cpus, "cpu", `cpus(${Option.getOrElse(limits.cpus, () => 0)})`],
      [limits.pids, "pids", `pids(${Option.getOrElse(limits.pids, () => 0)})`]
    ]
    for (const [value, controller, what] of explicit) {
      if (Option.isSome(value) && !available.has(controller)) return yield* missing(what, controller)
    }
    if (Option.isSome(limits.cpus) && limits.cpus.value > availableParallelism()) {
      return yield* new Unsupported({
        operation: `cpus(${limits.cpus.value}) (this host has ${availableParallelism()} CPUs)`,
        backend: BACKEND
      })
    }
    const orDefault = (value: Option.Option<number>, controller: Controller, fallback: () => number) =>
      Option.isSome(value) ? value : available.has(controller) ? Option.some(fallback()) : Option.none()
    return {
      memoryMib: orDefault(limits.memoryMib, "memory", defaultMemoryMib),
      pids: orDefault(limits.pids, "pids", () => DEFAULT_PIDS),
      cpus: limits.cpus,
      // cpu even without a quota: its own group shares CPU time fairly with the host's.
      controllers: CONTROLLERS.filter((controller) => available.has(controller))
    }
  })

/** One sandbox's cgroups. */
export interface SandboxCgroups {
  readonly directories: ReadonlyArray<string>
  /** The files a process writes its pid to, to join every one of them. */
  readonly procs: ReadonlyArray<string>
  /** How often the memory controller killed a process of the sandbox so far. */
  readonly oomKills: () => number
  readonly memoryMib: Option.Option<number>
}

const settings = (controller: Controller, version: 1 | 2, resolved: Resolved): ReadonlyArray<[string, string]> => {
  switch (controller) {
    case "memory":
      return Option.match(resolved.memoryMib, {
        onNone: () => [],
        onSome: (mib) => {
          const bytes = String(mib * 1024 * 1024)
          // No swap beyond the limit either (written after the memory limit, which it may not undercut).
          return version === 1
            ? [["memory.limit_in_bytes", bytes], ["memory.memsw.limit_in_bytes", bytes]]
            : [["memory.max", bytes], ["memory.swap.max", "0"]]
        }
      })
    case "cpu":
      return Option.match(resolved.cpus, {
        onNone: () => [],
        onSome: (cpus) => {
          const quota = String(Math.max(1000, Math.round(cpus * CPU_PERIOD_US)))
          return version === 1
            ? [["cpu.cfs_period_us", String(CPU_PERIOD_US)], ["cpu.cfs_quota_us", quota]]
            : [["cpu.max", `${quota} ${CPU_PERIOD_US}`]]
        }
      })
    case "pids":
      return Option.match(resolved.pids, { onNone: () => [], onSome: (pids) => [["pids.max", String(pids)]] })
  }
}

const oomKillsIn = (file: string) => (): number => {
  const match = /^oom_kill (\d+)$/m.exec(Option.getOrElse(readText(file), () => ""))
  return match === null ? 0 : Number(match[1])
}

/**
 * Removes the directories (children first is not needed: they have none), waiting a
 * little while processes that were just killed leave them. Never fails.
 */
export const remove = (directories: ReadonlyArray<string>): Effect.Effect<void> =>
  Effect.promise(async () => {
    for (const dir of directories) {
      for (let attempt = 0; attempt < 500; attempt++) {
        try {
          rmdirSync(dir)
          break
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code === "ENOENT") break
          await new Promise((resolve) => setTimeout(resolve, 10))
        }
      }
    }
  })

/** Creates the sandbox's cgroups with their limits; removed when the scope closes. */
export const make = (name: string, resolved: Resolved) =>
  Effect.acquireRelease(
    Effect.try({
      try: (): SandboxCgroups => {
        const available = hierarchies()
        const leaf = `${leafPrefix(process.pid)}${name}-${randomBytes(4).toString("hex")}`
        const directories: Array<string> = []
        let oomKills = () => 0
        try {
          for (const controller of resolved.controllers) {
            const hierarchy = available.get(controller)!
            // v2: one directory serves every controller of the hierarchy.
            const dir = join(hierarchy.parent, leaf)
            if (!directories.includes(dir)) {
              mkdirSync(dir)
              directories.push(dir)
            }
            for (const [file, value] of settings(controller, hierarchy.version, resolved)) {
              const path = join(dir, file)
              if (file === "memory.memsw.limit_in_bytes" && !existsSync(path)) continue // no swap accounting
              writeFileSync(path, value)
            }
            if (controller === "memory") {
              oomKills = oomKillsIn(join(dir, hierarchy.version === 1 ? "memory.oom_control" : "memory.events"))
            }
          }
        } catch (error) {
          for (const dir of directories) rmdirSync(dir)
          throw error
        }
        return {
          directories,
          procs: directories.map((dir) => join(dir, "cgroup.procs")),
          oomKills,
          memoryMib: resolved.memoryMib
        }
      },
      catch: (error) =>
        new SandboxError({ sandbox: name, reason: "Start", message: `cannot create the sandbox's cgroups: ${String(error)}` })
    }),
    (cgroups) => remove(cgroups.directories)
  )
