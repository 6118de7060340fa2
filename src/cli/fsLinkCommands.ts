/**
 * `volumes fs NAME ln -s TARGET PATH | readlink PATH | chmod MODE PATH | watch [PATH] [--json]`
 * (SPEC §11). Registered by `fsCommands.ts`, which lends its volume lookup.
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Stream } from "effect"
import { InvalidConfig } from "../VolumeError.js"
import type { VolumeFsFailure } from "../VolumeError.js"
import type { WatchEvent } from "../VolumeFs.js"
import type { withVolumeFs } from "./fsVolume.js"
import * as Output from "./output.js"

/** How `fsCommands.ts` runs a subcommand against the volume named on the command line. */
export type WithVolumeFs = typeof withVolumeFs

/** `755`, `0755` or `0o755` as permission bits; anything else is `InvalidConfig`. */
export const parseMode = (text: string): Effect.Effect<number, InvalidConfig> => {
  const match = /^(?:0o)?([0-7]{1,5})$/i.exec(text.trim())
  const mode = match === null ? Number.NaN : parseInt(match[1]!, 8)
  return Number.isInteger(mode) && mode <= 0o7777
    ? Effect.succeed(mode)
    : Effect.fail(new InvalidConfig({ message: `mode ${JSON.stringify(text)} is not octal permission bits from 0 to 7777 (e.g. 755)` }))
}

/** One line of `watch` output. */
const describeEvent = (event: WatchEvent): string =>
  event._tag === "Renamed" ? `Renamed ${event.from} -> ${event.path}` : `${event._tag} ${event.path}`

/** The commands, over the lender's volume lookup. */
export const makeLinkCommands = (withVolumeFs: WithVolumeFs) => {
  const ln = Command.make("ln", {
    symbolic: Options.boolean("symbolic").pipe(
      Options.withAlias("s"),
      Options.withDescription("make a symbolic link (the only kind a volume has)")
    ),
    target: Args.text({ name: "TARGET" }).pipe(Args.withDescription("stored as given; it may point anywhere")),
    path: Args.text({ name: "LINK_PATH" })
  }, (args) =>
    withVolumeFs((fs): Effect.Effect<void, VolumeFsFailure | InvalidConfig> =>
      args.symbolic
        ? fs.symlink(args.target, args.path)
        : Effect.fail(new InvalidConfig({ message: "volumes have no hard links; use ln -s TARGET LINK_PATH" }))
    )).pipe(Command.withDescription("create a symbolic link (ln -s TARGET LINK_PATH)"))

  const readlink = Command.make("readlink", { path: Args.text({ name: "PATH" }) }, (args) =>
    withVolumeFs((fs) => Effect.flatMap(fs.readlink(args.path), Output.line))).pipe(
      Command.withDescription("print a symbolic link's target (never follows it)")
    )

  const chmod = Command.make("chmod", { mode: Args.text({ name: "MODE" }), path: Args.text({ name: "PATH" }) }, (args) =>
    withVolumeFs((fs) => Effect.flatMap(parseMode(args.mode), (mode) => fs.chmod(args.path, mode)))).pipe(
      Command.withDescription("set permission bits, in octal (chmod 755 /bin/tool.sh); a symlink is never followed")
    )

  const watch = Command.make("watch", {
    path: Args.text({ name: "PATH" }).pipe(Args.withDefault("/")),
    json: Options.boolean("json").pipe(Options.withDescription("one JSON object per line")),
    shallow: Options.boolean("shallow").pipe(Options.withDescription("only the directory's own entries, not below"))
  }, (args) =>
    withVolumeFs((fs) =>
      fs.watch(args.path, { recursive: !args.shallow }).pipe(
        Stream.runForEach((event) => Output.line(args.json ? JSON.stringify(event) : describeEvent(event)))
      )
    )).pipe(Command.withDescription("print changes to the volume as they happen, until interrupted"))

  return [ln, readlink, chmod, watch] as const
}
