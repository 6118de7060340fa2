/**
 * `volumes fs NAME ls | cat | put | get | mkdir | rm | cp | mv | stat` (and, from
 * `fsLinkCommands.ts`, `ln -s | readlink | chmod | watch`).
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Stream } from "effect"
import { VolumeFsError } from "../VolumeError.js"
import { withDetails } from "./entryDetails.js"
import { get, put } from "./fsTransfer.js"
import { withVolumeFs } from "./fsVolume.js"
import { makeLinkCommands } from "./fsLinkCommands.js"
import * as Output from "./output.js"
import { writeStdout } from "./stdio.js"

const json = Output.jsonOption
const volumePath = (name: string, description: string) => Args.text({ name }).pipe(Args.withDescription(description))

/** `--json`: the record of what changed; otherwise nothing (as `mkdir`, `rm`, `cp`, `mv` print nothing). */
const done = (asJson: boolean, record: Readonly<Record<string, unknown>>) => (asJson ? Output.json(record) : Effect.void)

const ls = Command.make("ls", {
  path: volumePath("PATH", "a directory of the volume (default /)").pipe(Args.withDefault("/")),
  json
}, (args) =>
  withVolumeFs((fs, volume) =>
    Effect.gen(function*() {
      const entries = yield* withDetails(volume, yield* fs.list(args.path))
      yield* args.json
        ? Output.json(entries.map(([entry, detail]) => Output.entryRecord(entry, detail)))
        : Output.line(Output.entryTable(entries))
    })
  )).pipe(Command.withDescription("list a directory of the volume (links as 'name -> target')"))

const cat = Command.make("cat", { path: volumePath("PATH", "a file of the volume") }, (args) =>
  withVolumeFs((fs) => Stream.runForEach(fs.readStream(args.path), writeStdout))).pipe(
    Command.withDescription("write a file's raw bytes to stdout")
  )

const stat = Command.make("stat", {
  path: volumePath("PATH", "a path of the volume (default /)").pipe(Args.withDefault("/")),
  json
}, (args) =>
  withVolumeFs((fs, volume) =>
    Effect.gen(function*() {
      const [meta, detail] = (yield* withDetails(volume, [yield* fs.stat(args.path)]))[0]!
      yield* args.json ? Output.json(Output.metadataRecord(meta, detail)) : Output.line(Output.metadataDetails(meta, detail))
    })
  )).pipe(Command.withDescription("show metadata of a path (symlinks are not followed)"))

const mkdir = Command.make("mkdir", { path: volumePath("PATH", "the directory to create"), json }, (args) =>
  withVolumeFs((fs) => Effect.zipRight(fs.mkdir(args.path), done(args.json, { created: args.path })))).pipe(
    Command.withDescription("create a directory and its parents")
  )

const rm = Command.make("rm", {
  path: volumePath("PATH", "the file, symlink or (with -r) directory to remove"),
  recursive: Options.boolean("recursive").pipe(Options.withAlias("r"), Options.withDescription("remove directories and their contents")),
  json
}, (args) =>
  withVolumeFs((fs) =>
    (args.recursive
      ? Effect.flatMap(fs.stat(args.path), (meta) => meta.kind === "directory" ? fs.removeDir(args.path) : fs.remove(args.path))
      : fs.remove(args.path).pipe(
        Effect.catchIf(
          (error) => error._tag === "VolumeFsError" && error.reason === "IsADirectory",
          () => new VolumeFsError({ path: args.path, reason: "IsADirectory", detail: "use -r to remove a directory and its contents" })
        )
      )).pipe(Effect.zipRight(done(args.json, { removed: args.path })))
  )).pipe(Command.withDescription("remove a file or symlink (-r: a directory tree)"))

const cp = Command.make("cp", { from: volumePath("FROM", "source path"), to: volumePath("TO", "target path"), json }, (args) =>
  withVolumeFs((fs) => Effect.zipRight(fs.copy(args.from, args.to), done(args.json, { copied: args.from, to: args.to })))).pipe(
    Command.withDescription("copy a file or directory tree inside the volume")
  )

const mv = Command.make("mv", { from: volumePath("FROM", "source path"), to: volumePath("TO", "target path"), json }, (args) =>
  withVolumeFs((fs) => Effect.zipRight(fs.rename(args.from, args.to), done(args.json, { moved: args.from, to: args.to })))).pipe(
    Command.withDescription("move a file or directory inside the volume")
  )

export { fsParent } from "./fsVolume.js"

/** The subcommands of `volumes fs NAME`. */
export const fsSubcommands = [ls, cat, put, get, mkdir, rm, cp, mv, stat, ...makeLinkCommands(withVolumeFs)] as const
