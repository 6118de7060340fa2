/**
 * Where the local backend keeps things under its home. Data and bookkeeping never share
 * a directory: volumes hold only published volumes, `staging/` holds volumes being built,
 * `trash/` holds volumes being deleted, `run/` holds mount points. All of them live on
 * the same file system so that moving between them is an atomic rename.
 */
import { Config, Effect, Option } from "effect"
import { randomBytes } from "node:crypto"
import { homedir } from "node:os"
import * as NodePath from "node:path"
import { StorageError } from "../../VolumeError.js"
import type { ProcessId } from "../liveness.js"

/** Environment variable naming the home when no option is given. */
export const HOME_ENV = "EFFECT_VOLUMES_HOME"

export interface Layout {
  readonly home: string
  /** `<home>/db/volumes.db` */
  readonly database: string
  /** `<home>/volumes`: one directory per published volume. */
  readonly volumes: string
  readonly staging: string
  readonly trash: string
  /** Mount points of attached disk images. */
  readonly run: string
}

/** `options.home`, else `$EFFECT_VOLUMES_HOME`, else `~/.effect-volumes`; made absolute. */
export const resolveHome = (home?: string): Effect.Effect<string, StorageError> =>
  home !== undefined
    ? Effect.succeed(NodePath.resolve(home))
    : Config.option(Config.string(HOME_ENV)).pipe(
      Effect.map(Option.filter((value) => value.length > 0)),
      Effect.map(Option.getOrElse(() => NodePath.join(homedir(), ".effect-volumes"))),
      Effect.map((dir) => NodePath.resolve(dir)),
      Effect.mapError((cause) => new StorageError({ message: `cannot read ${HOME_ENV}: ${cause.message}`, cause }))
    )

export const make = (home: string): Layout => ({
  home,
  database: NodePath.join(home, "db", "volumes.db"),
  volumes: NodePath.join(home, "volumes"),
  staging: NodePath.join(home, "staging"),
  trash: NodePath.join(home, "trash"),
  run: NodePath.join(home, "run")
})

// A key is a valid volume name (it starts with a letter or digit and holds no "/"), so it
// is one path segment and plain concatenation gives what `path.join` would, for less
// (`list` builds these for every volume).

/** `<home>/volumes/<key>`: the bookkeeping root of one volume. */
export const volumeDir = (layout: Layout, key: string): string => `${layout.volumes}/${key}`

/** The files of a directory volume. */
export const dataDir = (layout: Layout, key: string): string => `${layout.volumes}/${key}/${DATA_DIR}`

/** The raw ext4 image of a disk volume. */
export const diskImage = (layout: Layout, key: string): string => `${layout.volumes}/${key}/${DISK_IMAGE}`

export const DATA_DIR = "data"
export const DISK_IMAGE = "disk.raw"

const randomSuffix = (): string => randomBytes(6).toString("hex")

/** `<key>.<pid>.<start>.<random>`: a staging entry names its builder so recovery can tell abandoned ones. */
export const stagingName = (key: string, owner: ProcessId): string =>
  `${key}.${owner.pid}.${owner.start}.${randomSuffix()}`

/** The builder of a staging entry (keys may contain dots, so parse from the right). */
export const stagingOwner = (entry: string): Option.Option<ProcessId> => {
  const parts = entry.split(".")
  if (parts.length < 4) return Option.none()
  const pid = Number(parts[parts.length - 3])
  const start = Number(parts[parts.length - 2])
  return Number.isSafeInteger(pid) && pid > 0 && Number.isSafeInteger(start) && start >= 0
    ? Option.some({ pid, start })
    : Option.none()
}

/** A fresh name under `trash/` for something that used to be `key`. */
export const trashName = (key: string): string => `${key}.${randomSuffix()}`
