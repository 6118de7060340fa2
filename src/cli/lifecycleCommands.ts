/**
 * `volumes label | update | resize | rename`: change a volume's labels, quota, expiry, disk
 * size and name in place (SPEC §10).
 */
import { Args, Command, Options } from "@effect/cli"
import { DateTime, Duration, Effect, Either, Option } from "effect"
import * as Size from "../Size.js"
import * as Volume from "../Volume.js"
import { InvalidConfig } from "../VolumeError.js"
import * as Output from "./output.js"

const json = Options.boolean("json").pipe(Options.withDescription("print the updated volume as JSON"))

/** `k=v` sets a label, `-k` (or `k-`) removes one. */
const parseChanges = (changes: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const set: Record<string, string> = {}
    const remove: Array<string> = []
    for (const text of changes) {
      const at = text.indexOf("=")
      if (at > 0) set[text.slice(0, at)] = text.slice(at + 1)
      else if (at < 0 && text.startsWith("-") && text.length > 1) remove.push(text.slice(1))
      else if (at < 0 && text.endsWith("-") && text.length > 1) remove.push(text.slice(0, -1))
      else return yield* new InvalidConfig({ message: `${JSON.stringify(text)}: expected KEY=VALUE, -KEY or KEY-` })
    }
    return { set, remove }
  })

const UNITS: Record<string, string> = { s: "seconds", m: "minutes", h: "hours", d: "days", w: "weeks" }

/** `30d`, `12h`, `15m`, `45s`, `2w` (or Effect's `"30 days"`) → a duration. */
export const parseDuration = (flag: string, text: string): Effect.Effect<Duration.Duration, InvalidConfig> => {
  const short = /^(\d+)\s*([smhdw])$/.exec(text.trim())
  const input = short === null ? text.trim() : `${short[1]} ${UNITS[short[2]!]}`
  const decoded = Option.filter(Duration.decodeUnknown(input), (duration) => Duration.toMillis(duration) > 0)
  return Option.match(decoded, {
    onNone: () => Effect.fail(new InvalidConfig({ message: `--${flag} ${JSON.stringify(text)}: expected a duration like 30d, 12h, 15m` })),
    onSome: Effect.succeed
  })
}

const show = (handle: Volume.VolumeHandle, asJson: boolean) =>
  asJson ? Output.json(Output.volumeRecord(handle)) : Output.line(Output.volumeDetails(handle))

export const label = Command.make("label", {
  name: Args.text({ name: "NAME" }),
  changes: Args.text({ name: "KEY=VALUE|-KEY|KEY-" }).pipe(
    Args.withDescription("labels to set (KEY=VALUE) or remove (-KEY, or KEY- after --)"),
    Args.atLeast(1)
  ),
  json
}, (args) =>
  Effect.gen(function*() {
    const labels = yield* parseChanges(args.changes)
    yield* show(yield* Volume.update(args.name, { labels }), args.json)
  })).pipe(Command.withDescription("set or remove labels of a volume in place"))

/** `--size 20G` → MiB; a bad size names the flag. */
const parseSize = (flag: string, text: string) =>
  Either.mapLeft(Size.parse(text), (error) => new InvalidConfig({ message: `--${flag}: ${error.message}` }))

const sizeOption = Options.text("size").pipe(
  Options.withDescription("grow a disk volume to this size, e.g. 20G (offline: refused while it is in use)")
)

export const update = Command.make("update", {
  name: Args.text({ name: "NAME" }),
  quota: Options.text("quota").pipe(Options.withDescription("a new quota, e.g. 4G (may be below usage)"), Options.optional),
  size: Options.optional(sizeOption),
  noQuota: Options.boolean("no-quota").pipe(Options.withDescription("remove the quota")),
  expiresIn: Options.text("expires-in").pipe(
    Options.withDescription("prune --expired may remove it this long from now, e.g. 30d"),
    Options.optional
  ),
  json
}, (args) =>
  Effect.gen(function*() {
    if (args.noQuota && Option.isSome(args.quota)) {
      return yield* new InvalidConfig({ message: "--quota and --no-quota exclude each other" })
    }
    const quota = args.noQuota ? Option.some(Option.none<number>()) : yield* Option.match(args.quota, {
      onNone: () => Effect.succeedNone,
      onSome: (text) => Effect.map(parseSize("quota", text), (mib) => Option.some(Option.some(mib)))
    })
    const size = yield* Option.match(args.size, {
      onNone: () => Effect.succeedNone,
      onSome: (text) => Effect.map(parseSize("size", text), Option.some)
    })
    const expiresAt = yield* Option.match(args.expiresIn, {
      onNone: () => Effect.succeedNone,
      onSome: (text) =>
        Effect.zipWith(parseDuration("expires-in", text), DateTime.now, (duration, now) =>
          Option.some(Option.some(DateTime.addDuration(now, duration))))
    })
    if (Option.isNone(quota) && Option.isNone(expiresAt) && Option.isNone(size)) {
      return yield* new InvalidConfig({ message: "nothing to update: give --quota, --no-quota, --expires-in or --size" })
    }
    yield* show(
      yield* Volume.update(args.name, {
        ...(Option.isSome(quota) ? { quota: quota.value } : {}),
        ...(Option.isSome(expiresAt) ? { expiresAt: expiresAt.value } : {}),
        ...(Option.isSome(size) ? { size: size.value } : {})
      }),
      args.json
    )
  })).pipe(Command.withDescription("change a volume's quota, expiry or disk size in place"))

export const resize = Command.make("resize", { name: Args.text({ name: "NAME" }), size: sizeOption, json }, (args) =>
  Effect.gen(function*() {
    const size = yield* parseSize("size", args.size)
    yield* show(yield* Volume.update(args.name, { size }), args.json)
  })).pipe(Command.withDescription("grow a disk volume's image and file system, data kept (never shrinks)"))

export const rename = Command.make("rename", {
  from: Args.text({ name: "OLD" }),
  to: Args.text({ name: "NEW" }),
  json: Options.boolean("json").pipe(Options.withDescription("print the renamed volume as JSON"))
}, (args) =>
  Effect.gen(function*() {
    const renamed = yield* Volume.rename(args.from, args.to)
    // Like `create`, the plain output is the name, for scripts.
    yield* args.json ? Output.json(Output.volumeRecord(renamed)) : Output.line(renamed.name)
  })).pipe(
    Command.withDescription("rename a volume: its data, settings and snapshots move to the new name (refused while in use)")
  )
