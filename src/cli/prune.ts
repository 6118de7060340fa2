/**
 * `volumes prune`, as Docker users expect it: it shows what would go, asks `[y/N]` on a
 * terminal, and refuses without `-f/--force` when nobody can answer (stdin is not a
 * terminal). `--dry-run` only lists. What goes is decided by the library's `Volume.prune`.
 */
import { Command, Options } from "@effect/cli"
import * as Readline from "node:readline"
import { Effect, Option } from "effect"
import { formatBytes } from "../Size.js"
import * as Volume from "../Volume.js"
import { UsageError } from "./errors.js"
import { parseDuration } from "./lifecycleCommands.js"
import * as Output from "./output.js"

interface Skipped {
  readonly name: string
  readonly reason: string
}

/**
 * Which volumes a prune would remove, and which it skips (held by a sandbox on any process or
 * machine, or not removable): `Volume.prune` as a dry run decides, with the same filters.
 */
const plan = (options: Volume.PruneOptions) =>
  Effect.gen(function*() {
    const decided = yield* Volume.prune({ ...options, dryRun: true })
    // Measured afresh: the prompt says how much data goes.
    const found = yield* Effect.forEach(
      decided.removed,
      // Removed by someone else meanwhile: nothing left to prune.
      (name) => Volume.get(name).pipe(Effect.map(Option.some), Effect.catchTag("VolumeNotFound", () => Effect.succeedNone)),
      { concurrency: 4 }
    )
    const remove = found.flatMap((volume) => Option.isSome(volume) ? [volume.value] : [])
    const skipped: Array<Skipped> = [...decided.skipped]
    // With --expired: the expired snapshots, which go first.
    return { remove, skipped, snapshots: decided.snapshots }
  })

/**
 * Asks on the terminal; anything but y/yes is no. The line is read in the terminal's own
 * (cooked) mode, so the answer is echoed and editable as in any shell prompt.
 */
const confirm = (question: string) =>
  Effect.async<boolean>((resume) => {
    process.stderr.write(`${question} [y/N] `)
    const lines = Readline.createInterface({ input: process.stdin, terminal: false })
    let answered = false
    const answer = (text: string) => {
      if (answered) return
      answered = true
      lines.close()
      resume(Effect.succeed(/^(y|yes)$/i.test(text.trim())))
    }
    lines.once("line", answer)
    lines.once("close", () => answer(""))
    return Effect.sync(() => lines.close())
  })

const json = Options.boolean("json").pipe(Options.withDescription("print machine-readable JSON"))

export const prune = Command.make("prune", {
  label: Output.labelFilter,
  force: Options.boolean("force").pipe(Options.withAlias("f"), Options.withDescription("do not ask for confirmation")),
  dryRun: Options.boolean("dry-run").pipe(Options.withDescription("only list what would be removed")),
  expired: Options.boolean("expired").pipe(
    Options.withDescription("only volumes whose expiry has passed; expired snapshots go too, first")
  ),
  unusedFor: Options.text("unused-for").pipe(
    Options.withPseudoName("DURATION"),
    Options.withDescription("only volumes no sandbox used for this long, e.g. 7d, 12h"),
    Options.optional
  ),
  json
}, (args) =>
  Effect.gen(function*() {
    const unusedFor = Option.isSome(args.unusedFor) ? yield* parseDuration("unused-for", args.unusedFor.value) : undefined
    const { remove, skipped, snapshots } = yield* plan({
      ...Output.listFilter(args.label),
      ...(args.expired ? { expired: true } : {}),
      ...(unusedFor === undefined ? {} : { unusedFor })
    })
    const removed: Array<string> = []
    const removedSnapshots: Array<Volume.SnapshotRef> = []
    const snapshotName = (ref: Volume.SnapshotRef) => `${ref.volume}@${ref.snapshot}`
    const report = (dryRun: boolean) =>
      Effect.gen(function*() {
        const goneSnapshots = dryRun ? snapshots : removedSnapshots
        if (args.json) {
          return yield* Output.json({
            dryRun,
            removed: dryRun ? remove.map((v) => v.name) : removed,
            snapshots: goneSnapshots,
            skipped
          })
        }
        const lines = [
          ...goneSnapshots.map((ref) => `${dryRun ? "would remove" : "removed"} snapshot ${snapshotName(ref)}`),
          ...(dryRun ? remove.map((v) => `would remove ${v.name}`) : removed.map((name) => `removed ${name}`))
        ]
        for (const line of lines) yield* Output.line(line)
        for (const { name, reason } of skipped) yield* Output.line(`skipped ${name} (${reason})`)
        if (lines.length === 0 && skipped.length === 0) yield* Output.line("nothing to prune")
      })
    if (args.dryRun || remove.length + snapshots.length === 0) return yield* report(true)
    if (!args.force) {
      const list = [
        ...snapshots.map((ref) => `  snapshot ${snapshotName(ref)}`),
        ...remove.map((v) => `  ${v.name} (${formatBytes(v.usedBytes)})`)
      ].join("\n")
      const total = formatBytes(remove.reduce((sum, v) => sum + v.usedBytes, 0))
      const what = `${remove.length} volume${remove.length === 1 ? "" : "s"} (${total})` +
        (snapshots.length === 0 ? "" : ` and ${snapshots.length} expired snapshot${snapshots.length === 1 ? "" : "s"}`)
      if (process.stdin.isTTY !== true) {
        yield* report(true)
        return yield* new UsageError({
          message: `prune would remove ${what}; pass -f/--force to confirm (stdin is not a terminal, so nobody can be asked)`,
          command: "volumes prune"
        })
      }
      process.stderr.write(`WARNING! This removes ${what} and their data:\n${list}\n`)
      if (!(yield* confirm("Are you sure you want to continue?"))) {
        process.stderr.write("nothing removed\n")
        return
      }
    }
    for (const ref of snapshots) {
      yield* Volume.removeSnapshot(ref.volume, ref.snapshot).pipe(
        Effect.zipRight(Effect.sync(() => removedSnapshots.push(ref))),
        Effect.catchTags({
          // Mounted by a sandbox meanwhile.
          VolumeInUse: (error) => Effect.sync(() => skipped.push({ name: snapshotName(ref), reason: error.message })),
          // Removed by someone else meanwhile.
          SnapshotNotFound: () => Effect.void,
          VolumeNotFound: () => Effect.void
        })
      )
    }
    for (const volume of remove) {
      yield* Volume.remove(volume.name).pipe(
        Effect.zipRight(Effect.sync(() => removed.push(volume.name))),
        Effect.catchTags({
          VolumeInUse: (error) => Effect.sync(() => skipped.push({ name: volume.name, reason: error.message })),
          // The cloud store's default volume cannot be removed.
          Unsupported: (error) => Effect.sync(() => skipped.push({ name: volume.name, reason: error.message })),
          // Removed by someone else meanwhile: nothing left to prune.
          VolumeNotFound: () => Effect.void
        })
      )
    }
    yield* report(false)
  })).pipe(Command.withDescription("remove every volume (matching the labels) that no sandbox holds; asks first"))
