/**
 * `volumes run`: a command in a sandbox with volumes mounted; exits with its exit code.
 */
import { Args, Command, Options } from "@effect/cli"
import { Chunk, Effect, Either, Option, Stream } from "effect"
import type * as Mount from "../Mount.js"
import * as Size from "../Size.js"
import { InvalidConfig, SandboxError } from "../VolumeError.js"
import { withBackend } from "./root.js"
import { stdin, writeStdout } from "./stdio.js"

/** The exit code of the command `volumes run` ran (read by main when the program ends). */
export let runExitCode: number | undefined = undefined

type Describe = (m: Mount.MountBuilder) => Mount.MountBuilder
interface MountRequest {
  readonly guest: string
  readonly describe: Describe
}

const invalid = (message: string) => Effect.fail(new InvalidConfig({ message }))

/**
 * `-v NAME:/guest[:ro]` (a named volume, created when missing), `-v NAME@SNAPSHOT:/guest`
 * (a snapshot, read-only) or `-v /host:/guest[:ro]` (a bind mount).
 */
const parseVolumeFlag = (text: string): Effect.Effect<MountRequest, InvalidConfig> => {
  const parts = text.split(":")
  const [source, guest, flag] = parts
  if (parts.length < 2 || parts.length > 3 || !source || !guest || (flag !== undefined && flag !== "ro" && flag !== "rw")) {
    return invalid(`-v ${JSON.stringify(text)}: expected NAME:/guest/path[:ro] or /host/path:/guest/path[:ro]`)
  }
  const at = source.startsWith("/") ? -1 : source.indexOf("@")
  if (at >= 0) {
    if (flag === "rw") return invalid(`-v ${JSON.stringify(text)}: a snapshot (NAME@SNAPSHOT) is mounted read-only`)
    return Effect.succeed({ guest, describe: (m) => m.snapshot(source.slice(0, at), source.slice(at + 1)) })
  }
  const ro = (m: Mount.MountBuilder) => (flag === "ro" ? m.readonly() : m)
  const describe: Describe = source.startsWith("/")
    ? (m) => ro(m.bind(source))
    : (m) => ro(m.namedWith(source, (n) => n.ensureExists()))
  return Effect.succeed({ guest, describe })
}

/** `--mount type=tmpfs|bind|volume,dst=/guest[,src=...][,size=64M][,ro]`. */
const parseMountFlag = (text: string): Effect.Effect<MountRequest, InvalidConfig> =>
  Effect.gen(function*() {
    const fields = new Map<string, string>()
    for (const part of text.split(",")) {
      const at = part.indexOf("=")
      fields.set(at < 0 ? part : part.slice(0, at), at < 0 ? "true" : part.slice(at + 1))
    }
    const get = (...keys: Array<string>) => keys.map((k) => fields.get(k)).find((v) => v !== undefined)
    const guest = get("dst", "destination", "target")
    if (guest === undefined) return yield* invalid(`--mount ${JSON.stringify(text)}: dst=/guest/path is required`)
    const source = get("src", "source")
    const readonly = get("ro", "readonly") === "true"
    const sizeText = get("size")
    const size = sizeText === undefined ? undefined : yield* Either.match(Size.parse(sizeText), {
      onLeft: (error) => invalid(`--mount ${JSON.stringify(text)}: ${error.message}`),
      onRight: Effect.succeed
    })
    const finish = (m: Mount.MountBuilder) => {
      const sized = size === undefined ? m : m.size(size)
      return readonly ? sized.readonly() : sized
    }
    switch (get("type") ?? "volume") {
      case "tmpfs":
        return { guest, describe: (m) => finish(m.tmpfs()) }
      case "bind":
        if (source === undefined) return yield* invalid(`--mount ${JSON.stringify(text)}: a bind mount needs src=/host/path`)
        return { guest, describe: (m) => finish(m.bind(source)) }
      case "volume":
        if (source === undefined) return yield* invalid(`--mount ${JSON.stringify(text)}: a volume mount needs src=NAME`)
        return { guest, describe: (m) => finish(m.namedWith(source, (n) => n.ensureExists())) }
      default:
        return yield* invalid(`--mount ${JSON.stringify(text)}: type must be tmpfs, bind or volume`)
    }
  })

export const runCommand = Command.make("run", {
  image: Options.text("image").pipe(
    Options.withDescription(`root file system: "host" (read-only) or an absolute directory`),
    Options.withDefault("host")
  ),
  volume: Options.text("volume").pipe(
    Options.withAlias("v"),
    Options.withDescription(
      "NAME:/guest[:ro] (named volume, created if missing), NAME@SNAPSHOT:/guest (read-only) or /host:/guest[:ro]; repeatable"
    ),
    Options.repeated
  ),
  mount: Options.text("mount").pipe(
    Options.withDescription("type=tmpfs|bind|volume,dst=/guest[,src=..][,size=64M][,ro]; repeatable"),
    Options.repeated
  ),
  env: Options.text("env").pipe(Options.withAlias("e"), Options.withDescription("KEY=VALUE; repeatable"), Options.repeated),
  workdir: Options.text("workdir").pipe(Options.withAlias("w"), Options.optional),
  name: Options.text("name").pipe(Options.withDescription("sandbox name (default run-<pid>)"), Options.optional),
  memory: Options.text("memory").pipe(
    Options.withDescription("memory limit, e.g. 512M or 2G (default: half the host's memory, at most 2G)"),
    Options.optional
  ),
  cpus: Options.float("cpus").pipe(Options.withDescription("CPU time limit in CPUs, e.g. 0.5 (default: no cap)"), Options.optional),
  pids: Options.integer("pids").pipe(Options.withDescription("process and thread limit (default 1024)"), Options.optional),
  interactive: Options.boolean("interactive").pipe(
    Options.withAlias("i"),
    Options.withDescription("pass this process's stdin (read to its end first) to the command")
  ),
  command: Args.text({ name: "CMD" }).pipe(Args.atLeast(1), Args.withDescription("the command after --"))
}, (args) =>
  withBackend(Effect.scoped(Effect.gen(function*() {
    // Loaded on demand: the sandbox runtime is only needed by this command.
    const [Sandbox, NamespaceRuntime] = yield* Effect.tryPromise({
      try: () => Promise.all([import("../Sandbox.js"), import("../NamespaceRuntime.js")]),
      catch: (cause) => new SandboxError({ sandbox: "-", reason: "Start", message: `the sandbox runtime could not be loaded: ${String(cause)}` })
    })
    let builder = Sandbox.builder(Option.getOrElse(args.name, () => `run-${process.pid}`)).image(args.image)
    for (const text of args.volume) {
      const request = yield* parseVolumeFlag(text)
      builder = builder.volume(request.guest, request.describe)
    }
    for (const text of args.mount) {
      const request = yield* parseMountFlag(text)
      builder = builder.volume(request.guest, request.describe)
    }
    for (const text of args.env) {
      const at = text.indexOf("=")
      if (at <= 0) return yield* invalid(`--env ${JSON.stringify(text)}: expected KEY=VALUE`)
      builder = builder.env(text.slice(0, at), text.slice(at + 1))
    }
    if (Option.isSome(args.workdir)) builder = builder.workdir(args.workdir.value)
    if (Option.isSome(args.memory)) {
      const text = args.memory.value
      builder = builder.memory(yield* Either.match(Size.parse(text), {
        onLeft: (error) => invalid(`--memory ${JSON.stringify(text)}: ${error.message}`),
        onRight: Effect.succeed
      }))
    }
    if (Option.isSome(args.cpus)) builder = builder.cpus(args.cpus.value)
    if (Option.isSome(args.pids)) builder = builder.pids(args.pids.value)
    const sandbox = yield* builder.create().pipe(Effect.provide(NamespaceRuntime.layer))
    const [cmd, ...rest] = args.command
    const input = args.interactive
      ? Buffer.concat(Chunk.toReadonlyArray(yield* Stream.runCollect(stdin)))
      : undefined
    yield* Stream.runForEach(sandbox.execStream(cmd, rest, { stdin: input }), (event) => {
      switch (event._tag) {
        case "Stdout":
          return writeStdout(event.data)
        case "Stderr":
          return Effect.sync(() => void process.stderr.write(event.data))
        case "Exit":
          return Effect.sync(() => {
            runExitCode = event.exitCode
          })
      }
    })
    const stopped = yield* sandbox.stop()
    for (const name of stopped.overQuota) {
      process.stderr.write(`warning: volume "${name}" is over its quota; host-side writes fail until files are removed\n`)
    }
  })))).pipe(
    Command.withDescription("run a command in a sandbox with volumes mounted (exits with its exit code)")
  )
