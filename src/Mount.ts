/**
 * Mounts: what a sandbox sees at a guest path (a host directory, a named volume, a tmpfs
 * or a disk image), described with an immutable builder and checked before any runtime
 * touches it.
 *
 * @since 0.1.0
 */
import { Effect, Option, Schema } from "effect"
import * as validation from "./internal/mount/validation.js"
import { Mebibytes } from "./Size.js"
import { InvalidConfig } from "./VolumeError.js"
import * as VolumeSpec from "./VolumeSpec.js"

// ---------------------------------------------------------------------------
// models
// ---------------------------------------------------------------------------

/**
 * The format of a host disk image.
 *
 * @since 0.1.0
 * @category models
 */
export const DiskFormat = Schema.Literal(...validation.DISK_FORMATS)

/**
 * @since 0.1.0
 * @category models
 */
export type DiskFormat = typeof DiskFormat.Type

/**
 * How guest-visible owner and mode relate to the host file: `strict` keeps them in an
 * xattr overlay (the host path must support xattrs), `relaxed` uses the overlay when
 * present, `off` shows literal host metadata.
 *
 * @since 0.1.0
 * @category models
 */
export const StatVirtualization = Schema.Literal(...validation.STAT_VIRTUALIZATIONS)

/**
 * @since 0.1.0
 * @category models
 */
export type StatVirtualization = typeof StatVirtualization.Type

/**
 * Where a guest `chmod` lands: `private` keeps it in the overlay, `mirror` copies the rwx
 * bits to the host inode.
 *
 * @since 0.1.0
 * @category models
 */
export const HostPermissions = Schema.Literal(...validation.HOST_PERMISSIONS)

/**
 * @since 0.1.0
 * @category models
 */
export type HostPermissions = typeof HostPermissions.Type

/**
 * How a named-volume mount treats the volume: `existing` requires it (never creates),
 * `create` requires it to be new, `ensureExists` creates it when missing and otherwise
 * accepts it only if it is {@link compatible} with the request.
 *
 * @since 0.1.0
 * @category models
 */
export const NamedVolumeMode = Schema.Literal(...validation.NAMED_VOLUME_MODES)

/**
 * @since 0.1.0
 * @category models
 */
export type NamedVolumeMode = typeof NamedVolumeMode.Type

const flag = Schema.optionalWith(Schema.Boolean, { default: () => false })

/** `None` when absent: omitted from the JSON, and optional when constructing by hand. */
const optionalOption = <S extends Schema.Schema.AnyNoContext>(schema: S) =>
  Schema.optionalWith(schema, { as: "Option" }).pipe(
    Schema.withConstructorDefault(() => Option.none<Schema.Schema.Type<S>>())
  )

/** Options every kind takes; they become real mount flags. */
const flagFields = {
  readonly: flag,
  noexec: flag,
  nosuid: flag,
  nodev: flag
}

/** A uid or gid: a whole number from 0 to 2^32 - 2 (2^32 - 1 means "unchanged" to chown). */
const Id = Schema.Int.pipe(Schema.between(0, 4294967294))

/** Recorded only when set explicitly; an unset policy is absent from the JSON. */
const policyFields = {
  statVirtualization: optionalOption(StatVirtualization),
  hostPermissions: optionalOption(HostPermissions),
  /** Guest-visible owner of files without an overlay record (needs stat virtualization). */
  uid: optionalOption(Id),
  /** Guest-visible group of files without an overlay record (needs stat virtualization). */
  gid: optionalOption(Id)
}

/**
 * A host directory (or file) bound into the sandbox.
 *
 * @since 0.1.0
 * @category models
 */
export class BindMount extends Schema.TaggedClass<BindMount>()("Bind", {
  guestPath: Schema.String,
  hostPath: Schema.String,
  ...flagFields,
  ...policyFields
}) {}

/**
 * A named volume. In `create` and `ensureExists` mode `kind` is always set (directory
 * unless `.disk()` was asked for) and the other requested fields describe the volume to
 * create; in `existing` mode they are all empty and the volume's kind is learnt at start.
 *
 * @since 0.1.0
 * @category models
 */
export class NamedMount extends Schema.TaggedClass<NamedMount>()("Named", {
  guestPath: Schema.String,
  name: Schema.String,
  mode: NamedVolumeMode,
  kind: optionalOption(VolumeSpec.VolumeKind),
  capacityMib: optionalOption(Mebibytes),
  quotaMib: optionalOption(Mebibytes),
  labels: Schema.optionalWith(Schema.Array(VolumeSpec.Label), { default: () => [] }),
  /** A snapshot of the volume to mount instead of the volume (`m.snapshot`); always read-only. */
  snapshot: optionalOption(Schema.String),
  /** Only this directory of the volume is mounted (relative, inside the volume). */
  subpath: optionalOption(Schema.String),
  ...flagFields,
  ...policyFields
}) {}

/**
 * An in-memory file system, capped at `sizeMib` when given.
 *
 * @since 0.1.0
 * @category models
 */
export class TmpfsMount extends Schema.TaggedClass<TmpfsMount>()("Tmpfs", {
  guestPath: Schema.String,
  sizeMib: optionalOption(Mebibytes),
  ...flagFields
}) {}

/**
 * A host disk image, mounted with `fstype` (ext4 when not given).
 *
 * @since 0.1.0
 * @category models
 */
export class DiskMount extends Schema.TaggedClass<DiskMount>()("Disk", {
  guestPath: Schema.String,
  hostPath: Schema.String,
  format: DiskFormat,
  fstype: optionalOption(Schema.String),
  ...flagFields
}) {}

/**
 * One mount of a sandbox, tagged by kind (`Bind`, `Named`, `Tmpfs`, `Disk`).
 *
 * @since 0.1.0
 * @category models
 */
export const VolumeMount = Schema.Union(BindMount, NamedMount, TmpfsMount, DiskMount)

/**
 * @since 0.1.0
 * @category models
 */
export type VolumeMount = typeof VolumeMount.Type

/**
 * {@link VolumeMount} to and from its JSON text (`Schema.encode` / `Schema.decodeUnknown`).
 *
 * @since 0.1.0
 * @category models
 */
export const VolumeMountFromJson = Schema.parseJson(VolumeMount)

// ---------------------------------------------------------------------------
// builders
// ---------------------------------------------------------------------------

/**
 * What a {@link NamedVolumeBuilder} has been told, before validation.
 *
 * @since 0.1.0
 * @category models
 */
export interface NamedVolumeRequest {
  readonly name: string
  readonly mode: NamedVolumeMode
  readonly kind: Option.Option<VolumeSpec.VolumeKind>
  readonly capacityMib: Option.Option<number>
  readonly quotaMib: Option.Option<number>
  readonly labels: ReadonlyArray<readonly [string, string]>
}

/**
 * How a named-volume mount finds or creates its volume; immutable, every call returns a
 * new builder. The mode defaults to `existing`.
 *
 * The volume-describing calls (`directory`, `disk`, `size`, `quota`, `label`) are
 * refused in `existing` mode rather than ignored: `existing` never creates or changes a
 * volume, so honouring them is impossible and dropping them silently would hide a
 * mistake. Use `ensureExists()` to state expectations about a volume that may exist.
 *
 * @since 0.1.0
 * @category constructors
 */
export class NamedVolumeBuilder {
  private constructor(
    /** What this builder has been told so far. */
    readonly request: NamedVolumeRequest
  ) {}

  /** A builder for the volume `name` in `existing` mode. */
  static make(name: string): NamedVolumeBuilder {
    return new NamedVolumeBuilder({
      name,
      mode: "existing",
      kind: Option.none(),
      capacityMib: Option.none(),
      quotaMib: Option.none(),
      labels: []
    })
  }

  private with(patch: Partial<NamedVolumeRequest>): NamedVolumeBuilder {
    return new NamedVolumeBuilder({ ...this.request, ...patch })
  }

  /** The volume must already exist (the default); it is never created or changed. */
  existing(): NamedVolumeBuilder {
    return this.with({ mode: "existing" })
  }

  /** The volume must not exist yet; the sandbox creates it. */
  create(): NamedVolumeBuilder {
    return this.with({ mode: "create" })
  }

  /** Creates the volume when missing, otherwise accepts it only if it matches the request. */
  ensureExists(): NamedVolumeBuilder {
    return this.with({ mode: "ensureExists" })
  }

  /** Uses the volume `name` instead of the one given to `namedWith`. */
  name(name: string): NamedVolumeBuilder {
    return this.with({ name })
  }

  /** A directory volume (the default when creating). */
  directory(): NamedVolumeBuilder {
    return this.with({ kind: Option.some("directory") })
  }

  /** A disk volume (a raw ext4 image); needs a `size` when creating. */
  disk(): NamedVolumeBuilder {
    return this.with({ kind: Option.some("disk") })
  }

  /** Size of a disk volume in MiB. */
  size(mib: number): NamedVolumeBuilder {
    return this.with({ capacityMib: Option.some(mib) })
  }

  /** Quota of a directory volume in MiB. */
  quota(mib: number): NamedVolumeBuilder {
    return this.with({ quotaMib: Option.some(mib) })
  }

  /** Adds a label; a repeated key keeps the last value. */
  label(key: string, value: string): NamedVolumeBuilder {
    return this.with({ labels: [...this.request.labels, [key, value] as const] })
  }
}

type KindChoice =
  | { readonly _tag: "Bind"; readonly hostPath: string }
  | {
    readonly _tag: "Named"
    readonly volume: NamedVolumeBuilder
    readonly call: string
    readonly snapshot?: string
  }
  | { readonly _tag: "Tmpfs" }
  | { readonly _tag: "Disk"; readonly hostPath: string }

interface MountOptions {
  readonly flags: { readonly readonly: boolean; readonly noexec: boolean; readonly nosuid: boolean; readonly nodev: boolean }
  readonly sizeMib: Option.Option<number>
  readonly format: Option.Option<DiskFormat>
  readonly fstype: Option.Option<string>
  readonly statVirtualization: Option.Option<StatVirtualization>
  readonly hostPermissions: Option.Option<HostPermissions>
  readonly uid: Option.Option<number>
  readonly gid: Option.Option<number>
  readonly subpath: Option.Option<string>
}

interface MountDraft extends MountOptions {
  readonly kinds: ReadonlyArray<KindChoice>
}

/**
 * Describes one mount; immutable, every call returns a new builder. Choose exactly one
 * kind (`bind`, `named`, `namedWith`, `tmpfs`, `disk`), add options, then `build`.
 *
 * @since 0.1.0
 * @category constructors
 */
export class MountBuilder {
  private constructor(private readonly draft: MountDraft) {}

  /** A builder with no kind chosen yet. */
  static make(): MountBuilder {
    return new MountBuilder({
      kinds: [],
      flags: { readonly: false, noexec: false, nosuid: false, nodev: false },
      sizeMib: Option.none(),
      format: Option.none(),
      fstype: Option.none(),
      statVirtualization: Option.none(),
      hostPermissions: Option.none(),
      uid: Option.none(),
      gid: Option.none(),
      subpath: Option.none()
    })
  }

  private with(patch: Partial<MountDraft>): MountBuilder {
    return new MountBuilder({ ...this.draft, ...patch })
  }

  private kind(choice: KindChoice): MountBuilder {
    return this.with({ kinds: [...this.draft.kinds, choice] })
  }

  private flag(name: keyof MountOptions["flags"]): MountBuilder {
    return this.with({ flags: { ...this.draft.flags, [name]: true } })
  }

  /** A host directory or file; `hostPath` must be absolute UTF-8 without `, : ;`. */
  bind(hostPath: string): MountBuilder {
    return this.kind({ _tag: "Bind", hostPath })
  }

  /** An existing named volume. */
  named(name: string): MountBuilder {
    return this.kind({ _tag: "Named", volume: NamedVolumeBuilder.make(name), call: `named(${validation.show(name)})` })
  }

  /** A snapshot of an existing named volume, mounted read-only (`Volume.snapshot` takes them). */
  snapshot(volume: string, snapshot: string): MountBuilder {
    return this.kind({
      _tag: "Named",
      volume: NamedVolumeBuilder.make(volume),
      call: `snapshot(${validation.show(volume)}, ${validation.show(snapshot)})`,
      snapshot
    }).readonly()
  }

  /** A named volume with a mode (`existing`, `create`, `ensureExists`) and what to create. */
  namedWith(name: string, f: (n: NamedVolumeBuilder) => NamedVolumeBuilder): MountBuilder {
    return this.kind({
      _tag: "Named",
      volume: f(NamedVolumeBuilder.make(name)),
      call: `namedWith(${validation.show(name)}, ...)`
    })
  }

  /** An in-memory file system. */
  tmpfs(): MountBuilder {
    return this.kind({ _tag: "Tmpfs" })
  }

  /** A host disk image (raw, qcow2 or vmdk). */
  disk(hostImagePath: string): MountBuilder {
    return this.kind({ _tag: "Disk", hostPath: hostImagePath })
  }

  /** Caps a tmpfs at `mib` MiB. */
  size(mib: number): MountBuilder {
    return this.with({ sizeMib: Option.some(mib) })
  }

  /** The disk image's format; by default taken from the extension (`.qcow2`, `.vmdk`), else raw. */
  format(format: DiskFormat): MountBuilder {
    return this.with({ format: Option.some(format) })
  }

  /** The file system inside the disk image (ext4 when not given). */
  fstype(fstype: string): MountBuilder {
    return this.with({ fstype: Option.some(fstype) })
  }

  /** Mounts read-only. */
  readonly(): MountBuilder {
    return this.flag("readonly")
  }

  /** Forbids executing files from the mount. */
  noexec(): MountBuilder {
    return this.flag("noexec")
  }

  /** Ignores set-user-ID and set-group-ID bits on the mount. */
  nosuid(): MountBuilder {
    return this.flag("nosuid")
  }

  /** Ignores device files on the mount. */
  nodev(): MountBuilder {
    return this.flag("nodev")
  }

  /** Guest owner/mode policy (bind mounts and named directory volumes only). */
  statVirtualization(policy: StatVirtualization): MountBuilder {
    return this.with({ statVirtualization: Option.some(policy) })
  }

  /** Guest chmod policy (bind mounts and named directory volumes only). */
  hostPermissions(policy: HostPermissions): MountBuilder {
    return this.with({ hostPermissions: Option.some(policy) })
  }

  /**
   * Guest-visible owner of files that have no overlay record yet (bind mounts and named
   * directory volumes with `statVirtualization("strict" | "relaxed")`).
   */
  uid(uid: number): MountBuilder {
    return this.with({ uid: Option.some(uid) })
  }

  /** Guest-visible group of files that have no overlay record yet; see {@link MountBuilder.uid}. */
  gid(gid: number): MountBuilder {
    return this.with({ gid: Option.some(gid) })
  }

  /**
   * Mounts only this directory of a named directory volume (`"a/b"`, relative to the volume
   * root). It must exist when the sandbox starts; a symlink on the way is refused.
   */
  subpath(path: string): MountBuilder {
    return this.with({ subpath: Option.some(path) })
  }

  /** Validates the description and returns the mount at `guestPath`. */
  build(guestPath: string): Effect.Effect<VolumeMount, InvalidConfig> {
    return buildMount(this.draft, guestPath)
  }
}

/**
 * A builder with no kind chosen yet.
 *
 * @since 0.1.0
 * @category constructors
 */
export const builder = (): MountBuilder => MountBuilder.make()

/**
 * Builds the mount `f` describes at `guestPath`, as `SandboxBuilder.volume` does.
 *
 * @since 0.1.0
 * @category constructors
 */
export const build = (
  guestPath: string,
  f: (m: MountBuilder) => MountBuilder
): Effect.Effect<VolumeMount, InvalidConfig> => f(builder()).build(guestPath)

// ---------------------------------------------------------------------------
// validation
// ---------------------------------------------------------------------------

const invalid = (guestPath: unknown, problem: string): InvalidConfig =>
  new InvalidConfig({ message: `mount at ${validation.show(guestPath)}: ${problem}` })

const describeKind = (choice: KindChoice): string => {
  switch (choice._tag) {
    case "Bind":
      return `bind(${validation.show(choice.hostPath)})`
    case "Named":
      return choice.call
    case "Tmpfs":
      return "tmpfs()"
    case "Disk":
      return `disk(${validation.show(choice.hostPath)})`
  }
}

const kindNoun: Record<KindChoice["_tag"], string> = {
  Bind: "a bind mount",
  Named: "a named-volume mount",
  Tmpfs: "a tmpfs mount",
  Disk: "a disk-image mount"
}

const POLICY_KINDS = "bind mounts and named directory volumes"

/** Options set on a kind that does not take them, each with the rule it breaks. */
const misappliedOptions = (options: MountOptions, kind: KindChoice["_tag"]): ReadonlyArray<string> => {
  const rules: ReadonlyArray<{
    readonly value: Option.Option<unknown>
    readonly call: (value: unknown) => string
    readonly kinds: ReadonlyArray<KindChoice["_tag"]>
    readonly rule: string
  }> = [
    {
      value: options.sizeMib,
      call: (v) => `size(${validation.show(v)})`,
      kinds: ["Tmpfs"],
      rule: "size applies only to tmpfs mounts (a named volume's size goes in namedWith(name, n => n.size(...)))"
    },
    {
      value: options.format,
      call: (v) => `format(${validation.show(v)})`,
      kinds: ["Disk"],
      rule: "format applies only to disk-image mounts"
    },
    {
      value: options.fstype,
      call: (v) => `fstype(${validation.show(v)})`,
      kinds: ["Disk"],
      rule: "fstype applies only to disk-image mounts"
    },
    {
      value: options.statVirtualization,
      call: (v) => `statVirtualization(${validation.show(v)})`,
      kinds: ["Bind", "Named"],
      rule: `statVirtualization applies only to ${POLICY_KINDS}`
    },
    {
      value: options.hostPermissions,
      call: (v) => `hostPermissions(${validation.show(v)})`,
      kinds: ["Bind", "Named"],
      rule: `hostPermissions applies only to ${POLICY_KINDS}`
    },
    {
      value: options.subpath,
      call: (v) => `subpath(${validation.show(v)})`,
      kinds: ["Named"],
      rule: "subpath applies only to named-volume mounts"
    },
    {
      value: options.uid,
      call: (v) => `uid(${validation.show(v)})`,
      kinds: ["Bind", "Named"],
      rule: `uid applies only to ${POLICY_KINDS}`
    },
    {
      value: options.gid,
      call: (v) => `gid(${validation.show(v)})`,
      kinds: ["Bind", "Named"],
      rule: `gid applies only to ${POLICY_KINDS}`
    }
  ]
  return rules.flatMap(({ call, kinds, rule, value }) =>
    Option.isSome(value) && !kinds.includes(kind) ? [`${kindNoun[kind]} does not take ${call(value.value)}: ${rule}`] : []
  )
}

const toVolumeMount = (draft: MountDraft, choice: KindChoice, guestPath: string): VolumeMount => {
  switch (choice._tag) {
    case "Bind":
      return new BindMount({
        guestPath,
        hostPath: choice.hostPath,
        ...draft.flags,
        statVirtualization: draft.statVirtualization,
        hostPermissions: draft.hostPermissions,
        uid: draft.uid,
        gid: draft.gid
      }, { disableValidation: true })
    case "Named": {
      const { capacityMib, kind, labels, mode, name, quotaMib } = choice.volume.request
      return new NamedMount({
        guestPath,
        name,
        mode,
        // Creating modes default to a directory volume, as `Volume.builder` does.
        kind: mode === "existing" ? kind : Option.orElse(kind, () => Option.some("directory" as const)),
        capacityMib: capacityMib as Option.Option<Mebibytes>,
        quotaMib: quotaMib as Option.Option<Mebibytes>,
        labels: mode === "existing" ? labels : VolumeSpec.dedupeLabels(labels),
        snapshot: Option.fromNullable(choice.snapshot),
        subpath: draft.subpath,
        ...draft.flags,
        statVirtualization: draft.statVirtualization,
        hostPermissions: draft.hostPermissions,
        uid: draft.uid,
        gid: draft.gid
      }, { disableValidation: true })
    }
    case "Tmpfs":
      return new TmpfsMount({ guestPath, sizeMib: draft.sizeMib as Option.Option<Mebibytes>, ...draft.flags }, {
        disableValidation: true
      })
    case "Disk":
      return new DiskMount({
        guestPath,
        hostPath: choice.hostPath,
        format: Option.getOrElse(draft.format, () => defaultFormat(choice.hostPath)),
        fstype: draft.fstype,
        ...draft.flags
      }, { disableValidation: true })
  }
}

const buildMount = Effect.fn("Mount.build")(function*(draft: MountDraft, guestPath: string) {
  const guestProblem = validation.guestPathProblem(guestPath)
  if (Option.isSome(guestProblem)) return yield* invalid(guestPath, guestProblem.value)
  const [choice, ...more] = draft.kinds
  if (choice === undefined) {
    return yield* invalid(
      guestPath,
      "no kind chosen; call exactly one of bind(hostPath), named(name), namedWith(name, ...), tmpfs() or disk(hostImagePath)"
    )
  }
  if (more.length > 0) {
    return yield* invalid(
      guestPath,
      `more than one kind chosen (${draft.kinds.map(describeKind).join(" and ")}); a mount has exactly one kind`
    )
  }
  const misapplied = misappliedOptions(draft, choice._tag)
  if (misapplied.length > 0) return yield* invalid(guestPath, misapplied.join("; "))
  const mount = toVolumeMount(draft, choice, normalizeGuestPath(guestPath))
  return yield* validate(mount)
})

const firstProblem = (...checks: ReadonlyArray<() => Option.Option<string>>): Option.Option<string> => {
  for (const check of checks) {
    const problem = check()
    if (Option.isSome(problem)) return problem
  }
  return Option.none()
}

const prefixed = (prefix: string, problem: Option.Option<string>): Option.Option<string> =>
  Option.map(problem, (p) => `${prefix}: ${p}`)

const setPolicies = (mount: BindMount | NamedMount): ReadonlyArray<string> => [
  ...Option.match(mount.statVirtualization, { onNone: () => [], onSome: (v) => [`statVirtualization(${validation.show(v)})`] }),
  ...Option.match(mount.hostPermissions, { onNone: () => [], onSome: (v) => [`hostPermissions(${validation.show(v)})`] }),
  ...Option.match(mount.uid, { onNone: () => [], onSome: (v) => [`uid(${validation.show(v)})`] }),
  ...Option.match(mount.gid, { onNone: () => [], onSome: (v) => [`gid(${validation.show(v)})`] })
]

const sharingProblem = (mount: BindMount | NamedMount): Option.Option<string> =>
  Option.orElse(
    validation.policyProblem(mount.statVirtualization, mount.hostPermissions),
    () => validation.ownerProblem(mount.statVirtualization, mount.uid, mount.gid)
  )

const namedProblem = (mount: NamedMount, kind: Option.Option<VolumeSpec.VolumeKind>): Option.Option<string> => {
  const call = `named volume ${validation.show(mount.name)}`
  return firstProblem(
    () => prefixed(call, VolumeSpec.nameProblem(mount.name)),
    () => prefixed(call, validation.modeProblem(mount.mode)),
    () =>
      Option.flatMap(mount.snapshot, (snapshot) =>
        Option.orElse(
          prefixed(`${call}: snapshot ${validation.show(snapshot)}`, VolumeSpec.nameProblem(snapshot)),
          () =>
            mount.mode !== "existing" || !mount.readonly
              ? Option.some(`${call}: a snapshot is mounted read-only from an existing volume`)
              : Option.none()
        )),
    () => {
      if (mount.mode !== "existing") return Option.none()
      const calls = validation.specOptionsInExistingMode(mount)
      return calls.length === 0 ? Option.none() : Option.some(
        `${call}: ${calls.join(", ")} describe a volume to create, but the mode is "existing", which never ` +
          `creates or changes a volume; add n.create() or n.ensureExists(), or drop them`
      )
    },
    () => Option.flatMap(mount.subpath, validation.subpathProblem),
    () =>
      Option.contains(kind, "disk") && Option.isSome(mount.subpath)
        ? Option.some(`${call} is a disk volume and does not take subpath(...): it applies to directory volumes`)
        : Option.none(),
    () => {
      const policies = setPolicies(mount)
      return Option.contains(kind, "disk") && policies.length > 0
        ? Option.some(`${call} is a disk volume and does not take ${policies.join(", ")}: these policies apply only to ${POLICY_KINDS}`)
        : Option.none()
    },
    () => sharingProblem(mount)
  )
}

/**
 * Checks the rules of one mount value (a decoded one too). `resolvedKind` is the kind of
 * the named volume once the runtime has looked it up (an `existing` mount does not say).
 */
const mountProblem = (mount: VolumeMount, resolvedKind: Option.Option<VolumeSpec.VolumeKind>): Option.Option<string> =>
  Option.orElse(validation.guestPathProblem(mount.guestPath), () => {
    switch (mount._tag) {
      case "Bind":
        return firstProblem(
          () => prefixed(`bind(${validation.show(mount.hostPath)})`, validation.hostPathProblem(mount.hostPath)),
          () => sharingProblem(mount)
        )
      case "Named":
        return namedProblem(mount, Option.orElse(resolvedKind, () => mount.kind))
      case "Tmpfs":
        return Option.flatMap(mount.sizeMib, validation.tmpfsSizeProblem)
      case "Disk":
        return firstProblem(
          () => prefixed(`disk(${validation.show(mount.hostPath)})`, validation.hostPathProblem(mount.hostPath)),
          () => validation.formatProblem(mount.format),
          () => Option.flatMap(mount.fstype, validation.fstypeProblem)
        )
    }
  })

/**
 * Checks every rule of one mount (built or decoded from JSON); the message names the
 * mount's guest path and the offending option. Pass `resolvedKind` once a named
 * volume's kind is known, so policies on a disk volume are refused.
 *
 * @since 0.1.0
 * @category validation
 */
export const validate = Effect.fn("Mount.validate")(function*(
  mount: VolumeMount,
  resolvedKind: Option.Option<VolumeSpec.VolumeKind> = Option.none()
) {
  const problem = mountProblem(mount, resolvedKind)
  if (Option.isSome(problem)) return yield* invalid(mount.guestPath, problem.value)
  if (mount._tag === "Named") {
    yield* Option.match(toSpec(mount), {
      onNone: () => Effect.void,
      onSome: (spec) =>
        VolumeSpec.validate(spec).pipe(
          Effect.mapError((error) => invalid(mount.guestPath, `named ${error.message}`))
        )
    })
  }
  return mount
})

/**
 * Options of {@link validateMounts}.
 *
 * @since 0.1.0
 * @category models
 */
export interface ValidateMountsOptions {
  /** Kinds of named volumes the runtime has looked up, keyed by `VolumeSpec.nameKey(name)`. */
  readonly resolvedKinds?: ReadonlyMap<string, VolumeSpec.VolumeKind>
}

/**
 * Checks the mounts of one sandbox: each mount's own rules, no two mounts on the same
 * guest path, no disk image or named disk volume mounted twice, and no sharing policies
 * on a named disk volume.
 *
 * @since 0.1.0
 * @category validation
 */
export const validateMounts = Effect.fn("Mount.validateMounts")(function*(
  mounts: ReadonlyArray<VolumeMount>,
  options: ValidateMountsOptions = {}
) {
  const byGuestPath = new Map<string, VolumeMount>()
  const byImage = new Map<string, VolumeMount>()
  const byDiskVolume = new Map<string, VolumeMount>()
  const twice = (first: VolumeMount, second: VolumeMount, problem: string) =>
    new InvalidConfig({
      message: `mounts at ${validation.show(first.guestPath)} and ${validation.show(second.guestPath)}: ${problem}`
    })
  for (const mount of mounts) {
    const resolvedKind = mount._tag === "Named"
      ? Option.fromNullable(options.resolvedKinds?.get(VolumeSpec.nameKey(mount.name)))
      : Option.none()
    yield* validate(mount, resolvedKind)

    const guestPath = normalizeGuestPath(mount.guestPath)
    const sameGuest = byGuestPath.get(guestPath)
    if (sameGuest !== undefined) {
      return yield* twice(
        sameGuest,
        mount,
        `both mount on guest path ${JSON.stringify(guestPath)}; a guest path takes one mount`
      )
    }
    byGuestPath.set(guestPath, mount)

    if (mount._tag === "Disk") {
      const image = validation.normalizeAbsolutePath(mount.hostPath)
      const sameImage = byImage.get(image)
      if (sameImage !== undefined) {
        return yield* twice(
          sameImage,
          mount,
          `both mount the disk image ${JSON.stringify(image)}; a disk image is attached once per sandbox`
        )
      }
      byImage.set(image, mount)
    }
    if (mount._tag === "Named" && Option.contains(Option.orElse(resolvedKind, () => mount.kind), "disk")) {
      const key = VolumeSpec.nameKey(mount.name)
      const sameVolume = byDiskVolume.get(key)
      if (sameVolume !== undefined) {
        return yield* twice(
          sameVolume,
          mount,
          `both mount the disk volume ${JSON.stringify(mount.name)}; a disk volume is attached once per sandbox`
        )
      }
      byDiskVolume.set(key, mount)
    }
  }
})

// ---------------------------------------------------------------------------
// helpers for runtimes
// ---------------------------------------------------------------------------

/**
 * The one spelling of a guest path: repeated and trailing slashes and `.` segments removed.
 *
 * @since 0.1.0
 * @category accessors
 */
export const normalizeGuestPath = (guestPath: string): string => validation.normalizeAbsolutePath(guestPath)

/**
 * The format a disk image gets when none is given: from its extension (`.qcow2`,
 * `.vmdk`, any case), else raw.
 *
 * @since 0.1.0
 * @category accessors
 */
export const defaultFormat = (hostImagePath: string): DiskFormat => validation.formatFromExtension(hostImagePath)

/**
 * The volume a `create` / `ensureExists` mount asks for; `None` in `existing` mode.
 *
 * @since 0.1.0
 * @category accessors
 */
export const toSpec = (mount: NamedMount): Option.Option<VolumeSpec.VolumeSpec> =>
  mount.mode === "existing"
    ? Option.none()
    : Option.some(
      new VolumeSpec.VolumeSpec({
        name: mount.name,
        kind: Option.getOrElse(mount.kind, () => "directory" as const),
        quotaMib: mount.quotaMib,
        capacityMib: mount.capacityMib,
        labels: mount.labels
      }, { disableValidation: true })
    )

/**
 * The facts about an existing volume that {@link compatible} compares (a `VolumeInfo` fits).
 *
 * @since 0.1.0
 * @category models
 */
export type ExistingVolume = validation.ExistingVolume

/**
 * What an `ensureExists` mount requests (the `VolumeSpec` from {@link toSpec} fits).
 *
 * @since 0.1.0
 * @category models
 */
export type RequestedVolume = validation.RequestedVolume

/**
 * The `ensureExists` rule: `None` when the existing volume may be used as it is (same kind
 * and, where requested, the same quota, size and label values), otherwise every reason it
 * may not. It never suggests changing the existing volume.
 *
 * @since 0.1.0
 * @category validation
 */
export const compatible: (existing: ExistingVolume, requested: RequestedVolume) => Option.Option<string> =
  validation.compatible
