/**
 * `volumes create | ls | inspect | rm | df`.
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Either, Option } from "effect"
import * as Size from "../Size.js"
import * as Volume from "../Volume.js"
import { InvalidConfig } from "../VolumeError.js"
import * as Output from "./output.js"
import * as Usage from "./usage.js"

const json = Output.jsonOption

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

/** Prints volumes as JSON, through a template, or with `render`. */
const printVolumes = (
  volumes: ReadonlyArray<Volume.VolumeHandle>,
  args: { readonly json: boolean; readonly format: Option.Option<string> },
  render: () => string
) =>
  Option.match(args.format, {
    onSome: (format) =>
      Effect.forEach(volumes, (volume) => Output.line(Output.template(format, Output.volumeRecord(volume))), { discard: true }),
    onNone: () => (args.json ? Output.json(volumes.map(Output.volumeRecord)) : Output.line(render()))
  })

export const create = Command.make("create", {
  name: Args.text({ name: "NAME" }).pipe(Args.withDescription("volume name: letters, digits, . - _ (up to 128)")),
  disk: Options.boolean("disk").pipe(Options.withDescription("a disk volume (an ext4 image of --size) instead of a directory")),
  size: Options.text("size").pipe(
    Options.withPseudoName("SIZE"),
    Options.withDescription("size of a disk volume, e.g. 512M, 20G (needs --disk)"),
    Options.optional
  ),
  quota: Options.text("quota").pipe(
    Options.withPseudoName("SIZE"),
    Options.withDescription("quota of a directory volume, e.g. 1G"),
    Options.optional
  ),
  label: Options.text("label").pipe(
    Options.withPseudoName("KEY=VALUE"),
    Options.withDescription("a label; repeatable"),
    Options.repeated
  ),
  ifMissing: Options.boolean("if-missing").pipe(
    Options.withDescription("succeed with an existing volume that matches (fail naming what differs)")
  ),
  json
}, (args) =>
  Effect.gen(function*() {
    if (Option.isSome(args.size) && !args.disk) {
      return yield* new InvalidConfig({
        message: "--size is the size of a disk volume: add --disk (a directory volume is capped with --quota)"
      })
    }
    let builder = Volume.builder(args.name)
    builder = args.disk ? builder.disk() : builder.directory()
    if (Option.isSome(args.size)) builder = builder.size(yield* sizeOf("size", args.size.value))
    if (Option.isSome(args.quota)) builder = builder.quota(yield* sizeOf("quota", args.quota.value))
    for (const text of args.label) {
      const [key, value] = yield* parseLabel(text)
      builder = builder.label(key, value)
    }
    const volume = yield* (args.ifMissing ? builder.getOrCreate() : builder.create())
    yield* args.json ? Output.json(Output.volumeRecord(volume)) : Output.line(volume.name)
  })).pipe(Command.withDescription("create a volume"))

export const ls = Command.make("ls", {
  label: Output.labelFilter,
  quiet: Options.boolean("quiet").pipe(Options.withAlias("q"), Options.withDescription("print names only")),
  json,
  format: Output.formatOption
}, (args) =>
  Effect.gen(function*() {
    const volumes = yield* Volume.list(Output.listFilter(args.label))
    if (args.quiet) return yield* Effect.forEach(volumes, (v) => Output.line(v.name), { discard: true })
    yield* printVolumes(volumes, args, () => Output.volumeTable(volumes))
  })).pipe(Command.withDescription("list volumes, newest first (OVER QUOTA marks a volume past its quota)"))

export const inspect = Command.make("inspect", {
  names: Args.text({ name: "NAME" }).pipe(Args.withDescription("one or more volumes"), Args.atLeast(1)),
  json,
  format: Output.formatOption
}, (args) =>
  Effect.gen(function*() {
    const volumes = yield* Effect.forEach(args.names, (name) => Volume.get(name))
    if (Option.isNone(args.format) && args.json) {
      // One name: the record; several: an array of records.
      return yield* Output.json(volumes.length === 1 ? Output.volumeRecord(volumes[0]!) : volumes.map(Output.volumeRecord))
    }
    yield* printVolumes(volumes, args, () => volumes.map(Output.volumeDetails).join("\n\n"))
  })).pipe(Command.withDescription("show volumes with freshly measured usage"))

export const rm = Command.make("rm", {
  names: Args.text({ name: "NAME" }).pipe(Args.withDescription("one or more volumes"), Args.atLeast(1)),
  force: Options.boolean("force").pipe(
    Options.withAlias("f"),
    Options.withDescription("skip names that do not exist (volumes in use are still refused)")
  ),
  withSnapshots: Options.boolean("with-snapshots").pipe(
    Options.withDescription("remove the volumes' snapshots too (otherwise they keep a volume in use)")
  ),
  json
}, (args) =>
  Effect.gen(function*() {
    const removed: Array<string> = []
    yield* Effect.forEach(args.names, (name) =>
      Volume.remove(name, { withSnapshots: args.withSnapshots }).pipe(
        Effect.zipRight(args.json ? Effect.sync(() => removed.push(name)) : Output.line(name)),
        Effect.catchTag("VolumeNotFound", (error) => args.force ? Effect.void : Effect.fail(error))
      ), { discard: true }).pipe(
        // With --json the record says what went, also when a later name failed.
        Effect.ensuring(args.json ? Effect.suspend(() => Output.json({ removed })).pipe(Effect.ignore) : Effect.void)
      )
  })).pipe(Command.withDescription("remove volumes and their data"))

export const df = Command.make("df", { label: Output.labelFilter, json }, (args) =>
  Effect.gen(function*() {
    const report = yield* Usage.measure(yield* Volume.list(Output.listFilter(args.label)))
    yield* args.json ? Output.json(report) : Output.line(Usage.table(report))
  })).pipe(Command.withDescription("summarise usage: logical and allocated bytes, files, what prune could reclaim"))
