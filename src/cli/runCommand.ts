/**
 * `volumes run`: a command in a sandbox with volumes mounted; exits with its exit code.
 */
import { Args, Command, Options } from "@effect/cli"
import { Chunk, Effect, Either, Option, Stream } from "effect"
import type * as Mount from "../Mount.js"
import * as Size from "../Size.js"
import { InvalidConfig, SandboxError } from "../VolumeError.js"
import { CommandExited } from "./errors.js"
import { stdin, writeStdout } from "./stdio.js"

type Describe = (m: Mount.MountBuilder) => Mount.MountBuilder
interface MountRequest {
  readonly guest: string
  readonly describe: Describe
}

const invalid = (message: string) => Effect.fail(new InvalidConfig({ message }))

/** `-v NAME:/guest[:ro]` (a named volume, created when missing) or `-v /host:/guest[:ro]` (a bind mount). */
const parseVolumeFlag = (text: string): Effect.Effect<MountRequest, InvalidConfig> => {
  const parts = text.split(":")
  const [source, guest, flag] = parts
  if (parts.length < 2 || parts.length > 3 || !source || !guest || (flag !== undefined && flag !== "ro" && flag !== "rw")) {
    return invalid(`-v ${JSON.stringify(text)}: expected NAME:/guest/path[:ro] or /host/path:/guest/path[:ro]`)
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
    Options.withDescription("NAME:/guest[:ro] (named volume, created if missing) or /host:/guest[:ro]; repeatable"),
    Options.repeated
  ),
  mount: Options.text("mount").pipe(
    Options.withDescription("type=tmpfs|bind|volume,dst=/guest[,src=..][,size=64M][,ro]; repeatable"),
    Options.repeated
  ),
  env: Options.text("env").pipe(Options.withAlias("e"), Options.withDescription("KEY=VALUE; repeatable"), Options.repeated),
  workdir: Options.text("workdir").pipe(Options.withAlias("w"), Options.optional),
  name: Options.text("name").pipe(Options.withDescription("sandbox name (default run-<pid>)"), Options.optional),
  interactive: Options.boolean("interactive").pipe(
    Options.withAlias("i"),
    Options.withDescription("pass this process's stdin (read to its end first) to the command")
  ),
  command: Args.text({ name: "CMD" }).pipe(Args.atLeast(1), Args.withDescription("the command after --"))
}, (args) =>
  (Effect.scoped(Effect.gen(function*() {
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
    const sandbox = yield* builder.create().pipe(Effect.provide(NamespaceRuntime.layer))
    const [cmd, ...rest] = args.command
    const input = args.interactive
      ? Buffer.concat(Chunk.toReadonlyArray(yield* Stream.runCollect(stdin)))
      : undefined
    let exitCode = 0
    yield* Stream.runForEach(sandbox.execStream(cmd, rest, { stdin: input }), (event) => {
      switch (event._tag) {
        case "Stdout":
          return writeStdout(event.data)
        case "Stderr":
          return Effect.sync(() => void process.stderr.write(event.data))
        case "Exit":
          return Effect.sync(() => {
            exitCode = event.exitCode
          })
      }
    })
    const stopped = yield* sandbox.stop()
    for (const name of stopped.overQuota) {
      process.stderr.write(`warning: volume "${name}" is over its quota; host-side writes fail until files are removed\n`)
    }
    if (exitCode !== 0) return yield* new CommandExited({ exitCode })
  })))).pipe(
    Command.withDescription("run a command in a sandbox with volumes mounted (exits with its exit code)")
  )
