/**
 * `volumes run`: a command in a sandbox with volumes mounted; exits with its exit code.
 * `run`'s options end at the first positional argument or `--` (see route.ts).
 */
import { Args, Command, Options } from "@effect/cli"
import { Chunk, Effect, Either, Option, Stream } from "effect"
import * as Size from "../Size.js"
import { InvalidConfig, SandboxError } from "../VolumeError.js"
import { CommandExited } from "./errors.js"
import * as Mounts from "./mounts.js"
import { stdin, writeStdout } from "./stdio.js"
import * as Terminal from "./terminal.js"

const repeatable = (name: string, alias: string | undefined, pseudo: string, description: string) => {
  const base = Options.text(name)
  return (alias === undefined ? base : base.pipe(Options.withAlias(alias))).pipe(
    Options.withPseudoName(pseudo),
    Options.withDescription(description),
    Options.repeated
  )
}

export const runCommand = Command.make("run", {
  image: Options.text("image").pipe(
    Options.withPseudoName("host|DIR"),
    Options.withDescription(`root file system: "host" (the host's, read-only; the default) or an absolute directory`),
    Options.withDefault("host")
  ),
  volume: repeatable(
    "volume",
    "v",
    "SRC:/DST[:OPTS]",
    "mount an existing volume NAME (any kind; NAME/sub/path: only that directory of it), a snapshot NAME@SNAPSHOT " +
      `(read-only) or an absolute host path; OPTS, comma-separated: ${Mounts.VOLUME_OPTIONS}; repeatable`
  ),
  mount: repeatable(
    "mount",
    undefined,
    "SPEC",
    "type=tmpfs|bind|volume,dst=/guest[,src=..][,size=64M][,ro][,create]; repeatable"
  ),
  createVolumes: Options.boolean("create-volumes").pipe(
    Options.withDescription("create missing named volumes (as directory volumes) instead of failing")
  ),
  env: repeatable("env", "e", "KEY=VALUE", "an environment variable of the command; repeatable"),
  workdir: Options.text("workdir").pipe(
    Options.withAlias("w"),
    Options.withPseudoName("DIR"),
    Options.withDescription("working directory of the command (default /)"),
    Options.optional
  ),
  name: Options.text("name").pipe(
    Options.withPseudoName("NAME"),
    Options.withDescription("sandbox name (default run-<pid>)"),
    Options.optional
  ),
  memory: Options.text("memory").pipe(
    Options.withPseudoName("SIZE"),
    Options.withDescription("memory limit, e.g. 512M or 2G (default: half the host's memory, at most 2G)"),
    Options.optional
  ),
  cpus: Options.float("cpus").pipe(Options.withDescription("CPU time limit in CPUs, e.g. 0.5 (default: no cap)"), Options.optional),
  pids: Options.integer("pids").pipe(Options.withDescription("process and thread limit (default 1024)"), Options.optional),
  interactive: Options.boolean("interactive").pipe(
    Options.withAlias("i"),
    Options.withDescription("pass stdin to the command (read to its end first, or live with -t)")
  ),
  tty: Options.boolean("tty").pipe(
    Options.withAlias("t"),
    Options.withDescription("run the command on a terminal (needs python3 in the image); -it for a shell")
  ),
  command: Args.text({ name: "CMD" }).pipe(
    Args.atLeast(1),
    Args.withDescription("the command and its arguments: everything after the first positional argument or --")
  )
}, (args) =>
  Effect.scoped(Effect.gen(function*() {
    // Loaded on demand: the sandbox runtime is only needed by this command.
    const [Sandbox, NamespaceRuntime] = yield* Effect.tryPromise({
      try: () => Promise.all([import("../Sandbox.js"), import("../NamespaceRuntime.js")]),
      catch: (cause) => new SandboxError({ sandbox: "-", reason: "Start", message: `the sandbox runtime could not be loaded: ${String(cause)}` })
    })
    let builder = Sandbox.builder(Option.getOrElse(args.name, () => `run-${process.pid}`)).image(args.image)
    const requests = [
      ...yield* Effect.forEach(args.volume, (text) => Mounts.parseVolumeFlag(text, args.createVolumes)),
      ...yield* Effect.forEach(args.mount, (text) => Mounts.parseMountFlag(text, args.createVolumes))
    ]
    for (const request of requests) builder = builder.volume(request.guest, yield* Mounts.describe(request))
    for (const text of args.env) {
      const at = text.indexOf("=")
      if (at <= 0) return yield* new InvalidConfig({ message: `--env ${JSON.stringify(text)}: expected KEY=VALUE` })
      builder = builder.env(text.slice(0, at), text.slice(at + 1))
    }
    if (Option.isSome(args.workdir)) builder = builder.workdir(args.workdir.value)
    if (Option.isSome(args.memory)) {
      const text = args.memory.value
      builder = builder.memory(yield* Either.match(Size.parse(text), {
        onLeft: (error) => Effect.fail(new InvalidConfig({ message: `--memory ${JSON.stringify(text)}: ${error.message}` })),
        onRight: Effect.succeed
      }))
    }
    if (Option.isSome(args.cpus)) builder = builder.cpus(args.cpus.value)
    if (Option.isSome(args.pids)) builder = builder.pids(args.pids.value)
    const input = args.tty && args.interactive
      ? yield* Terminal.interactiveInput
      : args.interactive
      ? Buffer.concat(Chunk.toReadonlyArray(yield* Stream.runCollect(stdin)))
      : undefined
    const sandbox = yield* builder.create().pipe(Effect.provide(NamespaceRuntime.layer))
    const [first, ...rest] = args.command
    const [cmd, cmdArgs] = args.tty ? Terminal.command(first, rest) : [first, rest] as const
    let exitCode = 0
    yield* Stream.runForEach(sandbox.execStream(cmd, cmdArgs, { stdin: input }), (event) => {
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
    for (const failure of stopped.fileServerFailures) {
      process.stderr.write(`warning: the mount at ${failure.guestPath}: ${failure.reason}\n`)
    }
    if (exitCode !== 0) return yield* new CommandExited({ exitCode })
  }))).pipe(
    Command.withDescription("run a command in a sandbox with volumes mounted (exits with its exit code)")
  )
