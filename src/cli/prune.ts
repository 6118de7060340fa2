/**
 * `volumes prune`, as Docker users expect it: it shows what would go, asks `[y/N]` on a
 * terminal, and refuses without `-f/--force` when nobody can answer (stdin is not a
 * terminal). `--dry-run` only lists. (The library's own `Volume.prune` is to come; until
 * then the decision logic lives here.)
 */
import { Command, Options } from "@effect/cli"
import * as Readline from "node:readline"
import { Effect, Option } from "effect"
import { formatBytes } from "../Size.js"
import * as Volume from "../Volume.js"
import { VolumeInUse } from "../VolumeError.js"
import { nameKey } from "../VolumeSpec.js"
import { LocalAttachments } from "../internal/local/attachments.js"
import { UsageError } from "./errors.js"
import * as Output from "./output.js"

interface Skipped {
  readonly name: string
  readonly reason: string
}

/** Which volumes a prune would remove, and which it skips because a sandbox holds them (local backend). */
const plan = (labels: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const candidates = yield* Volume.list(Output.listFilter(labels))
    // The local backend's attachment records tell which volumes are held before trying.
    const attachments = yield* Effect.serviceOption(LocalAttachments)
    const remove: Array<Volume.VolumeHandle> = []
    const skipped: Array<Skipped> = []
    for (const volume of candidates) {
      const holders = Option.isSome(attachments) ? yield* attachments.value.holders(nameKey(volume.name)) : []
      if (holders.length > 0) skipped.push({ name: volume.name, reason: new VolumeInUse({ volume: volume.name, holders }).message })
      // Measured afresh: the prompt says how much data goes.
      else remove.push(yield* Volume.get(volume.name).pipe(Effect.orElseSucceed(() => volume)))
    }
    return { remove, skipped }
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
  json
}, (args) =>
  Effect.gen(function*() {
    const { remove, skipped } = yield* plan(args.label)
    const removed: Array<string> = []
    const report = (dryRun: boolean) =>
      Effect.gen(function*() {
        if (args.json) return yield* Output.json({ dryRun, removed: dryRun ? remove.map((v) => v.name) : removed, skipped })
        const lines = dryRun ? remove.map((v) => `would remove ${v.name}`) : removed.map((name) => `removed ${name}`)
        for (const line of lines) yield* Output.line(line)
        for (const { name, reason } of skipped) yield* Output.line(`skipped ${name} (${reason})`)
        if (lines.length === 0 && skipped.length === 0) yield* Output.line("nothing to prune")
      })
    if (args.dryRun || remove.length === 0) return yield* report(true)
    if (!args.force) {
      const list = remove.map((v) => `  ${v.name} (${formatBytes(v.usedBytes)})`).join("\n")
      const total = formatBytes(remove.reduce((sum, v) => sum + v.usedBytes, 0))
      const what = `${remove.length} volume${remove.length === 1 ? "" : "s"} (${total})`
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
