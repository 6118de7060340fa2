/**
 * `volumes create | ls | inspect | rm | prune`.
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Either, Option } from "effect"
import * as Size from "../Size.js"
import * as Volume from "../Volume.js"
import { InvalidConfig } from "../VolumeError.js"
import * as Output from "./output.js"

const json = Options.boolean("json").pipe(Options.withDescription("print machine-readable JSON (sizes in bytes)"))

const sizeOf = (flag: string, value: string) =>
  Either.match(Size.parse(value), {
    onLeft: (error) => Effect.fail(new InvalidConfig({ message: `--${flag}: ${error.message}` })),
    onRight: Effect.succeed
  })

/** `k=v` → a label; create needs the `=`. */
const parseLabel = (text: string) => {
  const at = text.indexOf("=")
  return at <= 0
    ? Effect.fail(new InvalidConfig({ message: `--label ${JSON.stringify(text)}: expected KEY=VALUE` }))
    : Effect.succeed([text.slice(0, at), text.slice(at + 1)] as const)
}

export const create = Command.make("create", {
  name: Args.text({ name: "NAME" }).pipe(Args.withDescription("volume name: letters, digits, . - _ (up to 128)")),
  disk: Options.boolean("disk").pipe(Options.withDescription("a disk volume (ext4 image of --size) instead of a directory")),
  size: Options.text("size").pipe(Options.withDescription("size of a disk volume, e.g. 512M, 20G"), Options.optional),
  quota: Options.text("quota").pipe(Options.withDescription("quota of a directory volume, e.g. 1G"), Options.optional),
  label: Options.text("label").pipe(Options.withDescription("a label KEY=VALUE; repeatable"), Options.repeated)
}, (args) =>
  (Effect.gen(function*() {
    let builder = Volume.builder(args.name)
    builder = args.disk ? builder.disk() : builder.directory()
    if (Option.isSome(args.size)) builder = builder.size(yield* sizeOf("size", args.size.value))
    if (Option.isSome(args.quota)) builder = builder.quota(yield* sizeOf("quota", args.quota.value))
    for (const text of args.label) {
      const [key, value] = yield* parseLabel(text)
      builder = builder.label(key, value)
    }
    const volume = yield* builder.create()
    yield* Output.line(volume.name)
  }))).pipe(Command.withDescription("create a volume"))

export const ls = Command.make("ls", { label: Output.labelFilter, json }, (args) =>
  (Effect.gen(function*() {
    const volumes = yield* Volume.list(Output.listFilter(args.label))
    yield* args.json ? Output.json(volumes.map(Output.volumeRecord)) : Output.line(Output.volumeTable(volumes))
  }))).pipe(Command.withDescription("list volumes, newest first"))

export const inspect = Command.make("inspect", { name: Args.text({ name: "NAME" }), json }, (args) =>
  (Effect.gen(function*() {
    const volume = yield* Volume.get(args.name)
    yield* args.json ? Output.json(Output.volumeRecord(volume)) : Output.line(Output.volumeDetails(volume))
  }))).pipe(Command.withDescription("show one volume with freshly measured usage"))

export const rm = Command.make("rm", {
  names: Args.text({ name: "NAME" }).pipe(Args.atLeast(1)),
  force: Options.boolean("force").pipe(
    Options.withAlias("f"),
    Options.withDescription("skip names that do not exist (volumes in use are still refused)")
  )
}, (args) =>
  (Effect.forEach(args.names, (name) =>
    Volume.remove(name).pipe(
      Effect.zipRight(Output.line(name)),
      Effect.catchTag("VolumeNotFound", (error) => args.force ? Effect.void : Effect.fail(error))
    ), { discard: true }))).pipe(Command.withDescription("remove volumes and their data"))

export const df = Command.make("df", { json }, (args) =>
  Effect.gen(function*() {
    const volumes = yield* Volume.list({})
    yield* args.json ? Output.json(volumes.map(Output.volumeRecord)) : Output.line(Output.volumeTable(volumes))
  })).pipe(Command.withDescription("summarise usage: logical and allocated bytes, files, reclaimable space"))
