/**
 * `volumes run`'s `-v` and `--mount` values as mount descriptions. A named volume is
 * mounted whatever its kind (directory or disk); a missing one is created (as a directory
 * volume) only when asked: `--create-volumes`, or `create` in `--mount`.
 */
import { Effect, Either } from "effect"
import type * as Mount from "../Mount.js"
import { UsageError } from "./errors.js"
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

const VOLUME_FORMS =
  "expected NAME[/sub/path]:/guest/path[:OPTIONS], NAME@SNAPSHOT:/guest/path or /absolute/host/path:/guest/path[:OPTIONS]"

/** The options `-v` takes after the guest path, comma-separated (docs/cli.md, `volumes run`). */
export const VOLUME_OPTIONS = "ro, rw, noexec, strict|relaxed|off, private|mirror, uid=N, gid=N"

/** What the options of one `-v` ask for. */
interface VolumeOptions {
  readonly access?: "ro" | "rw"
  readonly noexec?: true
  readonly stat?: Mount.StatVirtualization
  readonly perms?: Mount.HostPermissions
  readonly uid?: number
  readonly gid?: number
}

const ID = /^(0|[1-9][0-9]{0,9})$/

/** Parses `ro,strict,uid=1000`; a bad option is a usage error naming it. */
const parseVolumeOptions = (text: string, flag: string): Either.Either<VolumeOptions, UsageError> => {
  let options: VolumeOptions = {}
  const refuse = (option: string, why: string) =>
    Either.left(
      new UsageError({
        message: `-v ${JSON.stringify(flag)}: ${why} ${JSON.stringify(option)} (options: ${VOLUME_OPTIONS})`,
        command: "volumes run"
      })
    )
  for (const option of text.split(",")) {
    const eq = option.indexOf("=")
    const [key, value] = eq < 0 ? [option, undefined] : [option.slice(0, eq), option.slice(eq + 1)]
    const flag: Partial<Record<string, VolumeOptions>> = {
      ro: { access: "ro" },
      rw: { access: "rw" },
      noexec: { noexec: true },
      strict: { stat: "strict" },
      relaxed: { stat: "relaxed" },
      off: { stat: "off" },
      private: { perms: "private" },
      mirror: { perms: "mirror" }
    }
    let patch: VolumeOptions
    if (key === "uid" || key === "gid") {
      if (value === undefined || !ID.test(value)) return refuse(option, "expected a whole number in")
      patch = { [key]: Number(value) }
    } else {
      const known = flag[key]
      if (known === undefined) return refuse(option, "unknown option")
      if (value !== undefined) return refuse(option, "this option takes no value:")
      patch = known
    }
    for (const [k, v] of Object.entries(patch) as Array<[keyof VolumeOptions, unknown]>) {
      if (options[k] !== undefined && options[k] !== v) return refuse(option, "conflicts with an earlier option:")
    }
    options = { ...options, ...patch }
  }
  return Either.right(options)
}

/** The builder calls of the options (policies and ids are checked by `Mount.build` per kind). */
const applyOptions = (options: VolumeOptions): Describe => (m) => {
  let out = options.access === "ro" ? m.readonly() : m
  if (options.noexec) out = out.noexec()
  if (options.stat !== undefined) out = out.statVirtualization(options.stat)
  if (options.perms !== undefined) out = out.hostPermissions(options.perms)
  if (options.uid !== undefined) out = out.uid(options.uid)
  if (options.gid !== undefined) out = out.gid(options.gid)
  return out
}

/**
 * `-v NAME:/guest[:OPTIONS]` (a named volume; `NAME/sub/path` mounts only that directory of
 * it), `-v NAME@SNAPSHOT:/guest` (a snapshot, read-only) or `-v /host:/guest[:OPTIONS]` (a
 * bind mount). OPTIONS: {@link VOLUME_OPTIONS}, comma-separated.
 */
export const parseVolumeFlag = (text: string, create: boolean): Effect.Effect<MountRequest, InvalidConfig | UsageError> =>
  Effect.gen(function*() {
    const parts = text.split(":")
    const [source, guest, flags] = parts
    if (parts.length < 2 || parts.length > 3 || !source || !guest || flags === "") {
      return yield* invalid(`-v ${JSON.stringify(text)}: ${VOLUME_FORMS}`)
    }
    if (!source.startsWith("/") && /^\.\.?(\/|$)/.test(source)) {
      return yield* invalid(`-v ${JSON.stringify(text)}: use an absolute host path (e.g. "$PWD/${source.replace(/^\.\//, "")}:${guest}"); a volume name has no "/"`)
    }
    if (!guest.startsWith("/")) return yield* invalid(`-v ${JSON.stringify(text)}: the guest path must be absolute`)
    const options = flags === undefined ? {} : yield* parseVolumeOptions(flags, text)
    const finish = applyOptions(options)
    const at = source.startsWith("/") ? -1 : source.indexOf("@")
    if (at >= 0) {
      if (options.access === "rw") return yield* invalid(`-v ${JSON.stringify(text)}: a snapshot (NAME@SNAPSHOT) is mounted read-only`)
      const [volume, snapshot] = [source.slice(0, at), source.slice(at + 1)]
      return { guest, create: false, finish, source: (m) => m.snapshot(volume, snapshot) } satisfies MountRequest
    }
    if (source.startsWith("/")) return { guest, create: false, finish, source: (m) => m.bind(source) } satisfies MountRequest
    const slash = source.indexOf("/")
    if (slash < 0) return { guest, volume: source, create, finish } satisfies MountRequest
    const subpath = source.slice(slash + 1)
    return {
      guest,
      volume: source.slice(0, slash),
      create,
      finish: (m) => finish(m.subpath(subpath))
    } satisfies MountRequest
  })

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
