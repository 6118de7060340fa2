/**
 * The `volumes fs NAME` parent command and the volume it names.
 */
import { Args, Command } from "@effect/cli"
import { Effect } from "effect"
import * as Volume from "../Volume.js"
import type { VolumeFs } from "../VolumeFs.js"

/** The `fs` command; its subcommands read the volume name with `yield* fsParent`. */
export const fsParent = Command.make("fs", {
  name: Args.text({ name: "NAME" }).pipe(Args.withDescription("the volume"))
}).pipe(Command.withDescription("work with the files of a volume (no sandbox needed)"))

/** Runs `f` with the volume named on the command line and its files. */
export const withVolumeFs = <A, E, R>(f: (fs: VolumeFs, volume: Volume.VolumeHandle) => Effect.Effect<A, E, R>) =>
  Effect.gen(function*() {
    const { name } = yield* fsParent
    const volume = yield* Volume.get(name)
    return yield* f(volume.fs(), volume)
  })
