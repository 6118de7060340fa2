/**
 * `volumes snapshot create | ls | inspect | rm | prune`, `volumes fork` and `volumes restore`
 * (SPEC §9).
 */
import { Args, Command, Options } from "@effect/cli"
import { DateTime, Duration, Effect, Either, Option } from "effect"
import * as Size from "../Size.js"
import * as Volume from "../Volume.js"
import type { VolumeSnapshot } from "../VolumeSnapshot.js"
import { InvalidConfig } from "../VolumeError.js"
import * as Output from "./output.js"
import * as Progress from "./progress.js"

const json = Options.boolean("json").pipe(Options.withDescription("print machine-readable JSON (sizes in bytes)"))
const volumeArg = Args.text({ name: "NAME" }).pipe(Args.withDescription("the volume"))
const snapshotArg = Args.text({ name: "SNAPSHOT" }).pipe(Args.withDescription("the snapshot's name"))
/** A repeatable `--label KEY=VALUE` option described by `description`. */
const labelsOption = (description: string) =>
  Options.text("label").pipe(Options.withDescription(description), Options.repeated)
const labels = labelsOption("a label KEY=VALUE; repeatable")

const parseLabels = (texts: ReadonlyArray<string>) =>
  Effect.forEach(texts, (text) => {
    const at = text.indexOf("=")
    return at <= 0
      ? Effect.fail(new InvalidConfig({ message: `--label ${JSON.stringify(text)}: expected KEY=VALUE` }))
      : Effect.succeed([text.slice(0, at), text.slice(at + 1)] as const)
  })

const parseDuration = (text: string) =>
  Effect.try({
    // "1h", "30m", "7d" or anything Duration understands ("2 hours").
    try: () => {
      const short = /^(\d+)\s*([smhd])$/.exec(text.trim())
      const units = { s: "seconds", m: "minutes", h: "hours", d: "days" } as const
      const input = short === null ? text : `${short[1]} ${units[short[2] as keyof typeof units]}`
      return Duration.decode(input as Duration.DurationInput)
    },
    catch: () => new InvalidConfig({ message: `--expires-in ${JSON.stringify(text)}: expected a duration such as 30m, 12h or 7d` })
  })

/** The JSON record of a snapshot (sizes in exact bytes). */
export const snapshotRecord = (snapshot: VolumeSnapshot) => ({
  volume: snapshot.volume,
  name: snapshot.name,
  kind: snapshot.kind,
  usedBytes: snapshot.usedBytes,
  labels: Object.fromEntries(snapshot.labels),
  createdAt: DateTime.formatIso(snapshot.createdAt),
  expiresAt: Option.getOrNull(Option.map(snapshot.expiresAt, DateTime.formatIso)),
  hostPath: Option.getOrNull(snapshot.info.hostPath)
})

const labelsText = (labels: ReadonlyArray<readonly [string, string]>): string =>
  labels.length === 0 ? "-" : labels.map(([k, v]) => `${k}=${v}`).join(",")

const snapshotTable = (snapshots: ReadonlyArray<VolumeSnapshot>): string =>
  Output.table(
    ["NAME", "USED", "LABELS", "CREATED", "EXPIRES"],
    snapshots.map((s) => [
      s.name,
      Size.formatBytes(s.usedBytes),
      labelsText(s.labels),
      DateTime.formatIso(s.createdAt),
      Option.match(s.expiresAt, { onNone: () => "-", onSome: DateTime.formatIso })
    ])
  )

const snapshotDetails = (snapshot: VolumeSnapshot): string => {
  const record = snapshotRecord(snapshot)
  const rows: Array<[string, string]> = [
    ["Volume", record.volume],
    ["Snapshot", record.name],
    ["Kind", record.kind],
    ["Used", `${Size.formatBytes(record.usedBytes)} (${record.usedBytes} bytes)`],
    ["Labels", labelsText(snapshot.labels)],
    ["Created", record.createdAt],
    ["Expires", record.expiresAt ?? "-"]
  ]
  if (record.hostPath !== null) rows.push(["Host path", record.hostPath])
  return rows.map(([k, v]) => `${(k + ":").padEnd(11)}${v}`).join("\n")
}

const create = Command.make("create", {
  volume: volumeArg,
  name: Options.text("name").pipe(
    Options.withDescription("snapshot name (default: a sortable timestamp such as 20261130T201530.123Z)"),
    Options.optional
  ),
  label: labels,
  expiresIn: Options.text("expires-in").pipe(
    Options.withDescription("let `volumes prune --expired` or `volumes snapshot prune` remove it after this long, e.g. 12h, 7d"),
    Options.optional
  ),
  live: Options.boolean("live").pipe(
    Options.withDescription("copy a directory volume a sandbox is writing, file by file (crash-consistent)")
  ),
  json
}, (args) =>
  Effect.gen(function*() {
    const labels = yield* parseLabels(args.label)
    const expiresIn = Option.isSome(args.expiresIn) ? yield* parseDuration(args.expiresIn.value) : undefined
    // The bar's scope ends (and the line is cleared) before the result is printed.
    const snapshot = yield* Effect.scoped(Effect.flatMap(Progress.forCopy(`snapshot ${args.volume}`, args.json), (onProgress) =>
      Volume.snapshot(args.volume, { name: Option.getOrUndefined(args.name), labels, expiresIn, live: args.live, onProgress })))
    yield* args.json ? Output.json(snapshotRecord(snapshot)) : Output.line(snapshot.name)
  })).pipe(Command.withDescription("take a read-only snapshot of a volume"))

const ls = Command.make("ls", { volume: volumeArg, json }, (args) =>
  Effect.gen(function*() {
    const snapshots = yield* Volume.snapshots(args.volume)
    yield* args.json ? Output.json(snapshots.map(snapshotRecord)) : Output.line(snapshotTable(snapshots))
  })).pipe(Command.withDescription("list a volume's snapshots, newest first"))

const inspect = Command.make("inspect", { volume: volumeArg, snapshot: snapshotArg, json }, (args) =>
  Effect.gen(function*() {
    const snapshot = yield* Volume.getSnapshot(args.volume, args.snapshot)
    yield* args.json ? Output.json(snapshotRecord(snapshot)) : Output.line(snapshotDetails(snapshot))
  })).pipe(Command.withDescription("show one snapshot"))

const rm = Command.make("rm", { volume: volumeArg, snapshots: snapshotArg.pipe(Args.atLeast(1)), json }, (args) =>
  Effect.gen(function*() {
    const removed: Array<string> = []
    yield* Effect.forEach(args.snapshots, (snapshot) =>
      Volume.removeSnapshot(args.volume, snapshot).pipe(
        Effect.zipRight(args.json ? Effect.sync(() => removed.push(snapshot)) : Output.line(snapshot))
      ), { discard: true }).pipe(
        // With --json the record says what went, also when a later name failed.
        Effect.ensuring(args.json ? Effect.suspend(() => Output.json({ removed })).pipe(Effect.ignore) : Effect.void)
      )
  })).pipe(Command.withDescription("remove snapshots of a volume"))

const prune = Command.make("prune", {
  volume: Args.text({ name: "NAME" }).pipe(
    Args.withDescription("only this volume's snapshots (default: every volume's)"),
    Args.optional
  ),
  dryRun: Options.boolean("dry-run").pipe(Options.withDescription("only list what would be removed")),
  json
}, (args) =>
  Effect.gen(function*() {
    const result = yield* Volume.pruneSnapshots({ volume: Option.getOrUndefined(args.volume), dryRun: args.dryRun })
    const name = (ref: Volume.SnapshotRef) => `${ref.volume}@${ref.snapshot}`
    if (args.json) {
      return yield* Output.json({
        dryRun: args.dryRun,
        removed: result.removed,
        skipped: result.skipped
      })
    }
    for (const ref of result.removed) yield* Output.line(`${args.dryRun ? "would remove" : "removed"} ${name(ref)}`)
    for (const ref of result.skipped) yield* Output.line(`skipped ${name(ref)} (${ref.reason})`)
    if (result.removed.length === 0 && result.skipped.length === 0) yield* Output.line("no expired snapshots")
  })).pipe(Command.withDescription("remove the snapshots whose expiry (--expires-in) has passed"))

/** The `snapshot` parent command (for help and routing; see {@link snapshotCommand}). */
export const snapshotParent = Command.make("snapshot").pipe(
  Command.withDescription("read-only, point-in-time copies of volumes")
)

/** The subcommands of `volumes snapshot`. */
export const snapshotSubcommands = [create, ls, inspect, rm, prune] as const

/** `volumes snapshot ...`. */
export const snapshotCommand = snapshotParent.pipe(Command.withSubcommands(snapshotSubcommands))

/** `volumes fork SRC DST [--snapshot S]`. */
export const forkCommand = Command.make("fork", {
  source: Args.text({ name: "SRC" }).pipe(Args.withDescription("the volume to copy")),
  target: Args.text({ name: "DST" }).pipe(Args.withDescription("the new volume (must not exist)")),
  snapshot: Options.text("snapshot").pipe(Options.withDescription("copy this snapshot of SRC instead"), Options.optional),
  label: labelsOption("a label KEY=VALUE replacing the source's labels; repeatable"),
  quota: Options.text("quota").pipe(Options.withDescription("quota of the new volume, e.g. 1G"), Options.optional),
  json
}, (args) =>
  Effect.gen(function*() {
    const quota = Option.isSome(args.quota)
      ? yield* Either.match(Size.parse(args.quota.value), {
        onLeft: (error) => Effect.fail(new InvalidConfig({ message: `--quota: ${error.message}` })),
        onRight: Effect.succeed
      })
      : undefined
    const labels = args.label.length > 0 ? yield* parseLabels(args.label) : undefined
    const volume = yield* Effect.scoped(Effect.flatMap(Progress.forCopy(`fork ${args.source}`, args.json), (onProgress) =>
      Volume.fork(args.source, args.target, { snapshot: Option.getOrUndefined(args.snapshot), labels, quota, onProgress })))
    yield* args.json ? Output.json(Output.volumeRecord(volume)) : Output.line(volume.name)
  })).pipe(Command.withDescription("create a new, independent volume from a volume or one of its snapshots"))

/** `volumes restore NAME SNAPSHOT`. */
export const restoreCommand = Command.make("restore", { volume: volumeArg, snapshot: snapshotArg, json }, (args) =>
  Effect.gen(function*() {
    yield* Effect.scoped(Effect.flatMap(Progress.forCopy(`restore ${args.volume}`, args.json), (onProgress) =>
      Volume.restore(args.volume, args.snapshot, { onProgress })))
    const volume = yield* Volume.get(args.volume)
    yield* args.json ? Output.json(Output.volumeRecord(volume)) : Output.line(volume.name)
  })).pipe(Command.withDescription("make a volume's content its snapshot's again (refused while a sandbox holds it)"))
