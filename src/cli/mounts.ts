/**
 * `volumes run`'s `-v` and `--mount` values as mount descriptions. A named volume is
 * mounted whatever its kind (directory or disk); a missing one is created (as a directory
 * volume) only when asked: `--create-volumes`, or `create` in `--mount`.
 */
import { Effect, Either } from "effect"
import type * as Mount from "../Mount.js"
import * as Size from "../Size.js"
import * as Volume from "../Volume.js"
import type { VolumeBackend } from "../VolumeBackend.js"
import { InvalidConfig } from "../VolumeError.js"

type Describe = (m: Mount.MountBuilder) => Mount.MountBuilder

/** One mount of the command line. */
export interface MountRequest {
  readonly guest: string
  /** The named volume, for named-volume mounts. */
  readonly volume?: string | undefined
  /** Create the named volume when it is missing. */
  readonly create: boolean
  /** Everything but the source: read-only, size. */
  readonly finish: Describe
  /** The source of a bind or tmpfs mount. */
  readonly source?: Describe | undefined
}

const invalid = (message: string) => Effect.fail(new InvalidConfig({ message }))

const VOLUME_FORMS = "expected NAME:/guest/path[:ro], NAME@SNAPSHOT:/guest/path or /absolute/host/path:/guest/path[:ro]"

/**
 * `-v NAME:/guest[:ro]` (a named volume), `-v NAME@SNAPSHOT:/guest` (a snapshot, read-only)
 * or `-v /host:/guest[:ro]` (a bind mount).
 */
export const parseVolumeFlag = (text: string, create: boolean): Effect.Effect<MountRequest, InvalidConfig> => {
  const parts = text.split(":")
  const [source, guest, flag] = parts
  if (parts.length < 2 || parts.length > 3 || !source || !guest || (flag !== undefined && flag !== "ro" && flag !== "rw")) {
    return invalid(`-v ${JSON.stringify(text)}: ${VOLUME_FORMS}`)
  }
  if (!source.startsWith("/") && (source.includes("/") || source === "." || source === "..")) {
    return invalid(`-v ${JSON.stringify(text)}: use an absolute host path (e.g. "$PWD/${source.replace(/^\.\//, "")}:${guest}"); a volume name has no "/"`)
  }
  if (!guest.startsWith("/")) return invalid(`-v ${JSON.stringify(text)}: the guest path must be absolute`)
  const finish: Describe = (m) => (flag === "ro" ? m.readonly() : m)
  const at = source.startsWith("/") ? -1 : source.indexOf("@")
  if (at >= 0) {
    if (flag === "rw") return invalid(`-v ${JSON.stringify(text)}: a snapshot (NAME@SNAPSHOT) is mounted read-only`)
    const [volume, snapshot] = [source.slice(0, at), source.slice(at + 1)]
    return Effect.succeed({ guest, create: false, finish, source: (m) => m.snapshot(volume, snapshot) })
  }
  return Effect.succeed(
    source.startsWith("/") ? { guest, create: false, finish, source: (m) => m.bind(source) } : { guest, volume: source, create, finish }
  )
}

/** `--mount type=tmpfs|bind|volume,dst=/guest[,src=...][,size=64M][,ro][,create]`. */
export const parseMountFlag = (text: string, createAll: boolean): Effect.Effect<MountRequest, InvalidConfig> =>
  Effect.gen(function*() {
    const fields = new Map<string, string>()
    for (const part of text.split(",")) {
      const at = part.indexOf("=")
      fields.set(at < 0 ? part : part.slice(0, at), at < 0 ? "true" : part.slice(at + 1))
    }
    const get = (...keys: Array<string>) => keys.map((k) => fields.get(k)).find((v) => v !== undefined)
    const guest = get("dst", "destination", "target")
    if (guest === undefined) return yield* invalid(`--mount ${JSON.stringify(text)}: dst=/guest/path is required`)
    const source = get("src", "source")
    const readonly = get("ro", "readonly") === "true"
    const sizeText = get("size")
    const size = sizeText === undefined ? undefined : yield* Either.match(Size.parse(sizeText), {
      onLeft: (error) => invalid(`--mount ${JSON.stringify(text)}: ${error.message}`),
      onRight: Effect.succeed
    })
    const finish: Describe = (m) => {
      const sized = size === undefined ? m : m.size(size)
      return readonly ? sized.readonly() : sized
    }
    switch (get("type") ?? "volume") {
      case "tmpfs":
        return { guest, create: false, finish, source: (m) => m.tmpfs() }
      case "bind":
        if (source === undefined || !source.startsWith("/")) {
          return yield* invalid(`--mount ${JSON.stringify(text)}: a bind mount needs src=/absolute/host/path`)
        }
        return { guest, create: false, finish, source: (m) => m.bind(source) }
      case "volume":
        if (source === undefined) return yield* invalid(`--mount ${JSON.stringify(text)}: a volume mount needs src=NAME`)
        return { guest, volume: source, create: createAll || get("create") === "true", finish }
      default:
        return yield* invalid(`--mount ${JSON.stringify(text)}: type must be tmpfs, bind or volume`)
    }
  })

/** The mount description of a request: an existing volume of any kind, or one created now when allowed. */
export const describe = (request: MountRequest): Effect.Effect<Describe, never, VolumeBackend> => {
  const { finish, source, volume } = request
  if (source !== undefined) return Effect.succeed((m) => finish(source(m)))
  const name = volume ?? ""
  if (!request.create) return Effect.succeed((m) => finish(m.named(name)))
  return Volume.get(name).pipe(
    Effect.as<Describe>((m) => finish(m.named(name))),
    // Missing (or unreadable: the sandbox start reports that): a directory volume is created with the sandbox.
    Effect.orElseSucceed((): Describe => (m) => finish(m.namedWith(name, (n) => n.ensureExists())))
  )
}
