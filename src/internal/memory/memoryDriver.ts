/**
 * An `FsDriver` over an in-memory tree. It gives the outcomes the local backend gets from
 * a POSIX file system (same error tags and `VolumeFsError` reasons, same modes and owners),
 * so tests written against the memory backend hold on the local one.
 *
 * Every operation runs synchronously from its checks to its mutation (one `Effect.suspend`
 * body, no yield in between), so each is atomic without locks, and a failing operation
 * changes nothing. Stored bytes are never mutated in place: a write replaces the file node,
 * which is why copies of a tree may share buffers and streams may read a snapshot.
 */
import { DateTime, Effect, Either, Option, Stream } from "effect"
import type { Scope } from "effect"
import { InvalidPath, PathNotFound, VolumeFsError, VolumeNotFound } from "../../VolumeError.js"
import type { VolumeFsErrorReason, VolumeFsFailure } from "../../VolumeError.js"
import { FsEntry, FsMetadata } from "../../VolumeFs.js"
import type { WatchEvent } from "../../VolumeFs.js"
import type { FsDriver, FsWriter } from "../fsDriver.js"
import * as Paths from "../paths.js"
import { notify, watchTree } from "./watch.js"

/** What a file written by this process gets with the usual umask 022. */
const FILE_MODE = 0o644
/** What `mkdir` gives a directory with the usual umask 022. */
const DIRECTORY_MODE = 0o755
/** What Linux reports for every symlink (a link has no permission bits of its own). */
const SYMLINK_MODE = 0o777
/** What ext4 reports as the size of a directory (one block); the local backend shows the same. */
const DIRECTORY_SIZE = 4096
/** Files written by this process belong to it, as on the local backend. */
const OWNER_UID = process.getuid?.() ?? 0
const OWNER_GID = process.getgid?.() ?? 0

interface Times {
  modified: DateTime.Utc
  readonly accessed: DateTime.Utc
  readonly created: DateTime.Utc
}

interface FileNode {
  readonly _tag: "file"
  /** Never mutated: a write replaces the whole node, as a rename over the target does. */
  readonly data: Uint8Array
  readonly times: Times
  mode: number
}

interface DirectoryNode {
  readonly _tag: "directory"
  readonly children: Map<string, Node>
  /** `modified` changes when an entry is added or removed, as on POSIX. */
  readonly times: Times
  mode: number
}

interface SymlinkNode {
  readonly _tag: "symlink"
  /** Stored verbatim; never resolved. */
  readonly target: string
  readonly times: Times
}

type Node = FileNode | DirectoryNode | SymlinkNode

/**
 * The files of one volume.
 */
export interface MemoryTree {
  readonly root: DirectoryNode
  /** Sum of the file sizes in the tree, kept current by every mutation. */
  usedBytes: number
}

const stamp = (at: DateTime.Utc): Times => ({ modified: at, accessed: at, created: at })

const newDirectory = (at: DateTime.Utc, mode: number = DIRECTORY_MODE): DirectoryNode => ({
  _tag: "directory",
  children: new Map(),
  times: stamp(at),
  mode
})

const newFile = (data: Uint8Array, at: DateTime.Utc, mode: number = FILE_MODE): FileNode => ({
  _tag: "file",
  data,
  times: stamp(at),
  mode
})

const newSymlink = (target: string, at: DateTime.Utc): SymlinkNode => ({ _tag: "symlink", target, times: stamp(at) })

/** An empty volume. */
export const makeTree = (at: DateTime.Utc): MemoryTree => ({ root: newDirectory(at), usedBytes: 0 })

/** A private copy of caller-owned bytes (`Buffer#slice` would share memory, so not that). */
const copyBytes = (data: Uint8Array): Uint8Array => new Uint8Array(data)

const sizeOf = (node: Node): number =>
  node._tag === "file" ? node.data.byteLength : node._tag === "symlink" ? Buffer.byteLength(node.target) : DIRECTORY_SIZE

/** Bytes of the files and symlinks at or below `node`. */
const bytesBelow = (node: Node): number => {
  if (node._tag !== "directory") return sizeOf(node)
  let total = 0
  for (const child of node.children.values()) total += bytesBelow(child)
  return total
}

const filesBelow = (node: Node): number => {
  if (node._tag !== "directory") return 1
  let total = 0
  for (const child of node.children.values()) total += filesBelow(child)
  return total
}

/** Bytes and number of the files and symlinks of a tree (the figures of a copy's progress). */
export const figuresOf = (tree: MemoryTree): { readonly bytes: number; readonly files: number } => ({
  bytes: tree.usedBytes,
  files: filesBelow(tree.root)
})

/** A copy of a tree with fresh times; file buffers are shared (they are never mutated). */
const cloneNode = (node: Node, at: DateTime.Utc): Node => {
  if (node._tag === "file") return newFile(node.data, at, node.mode)
  if (node._tag === "symlink") return newSymlink(node.target, at)
  const copy = newDirectory(at, node.mode)
  for (const [name, child] of node.children) copy.children.set(name, cloneNode(child, at))
  return copy
}

/** A copy of a node with its times kept; file buffers are shared (they are never mutated). */
const copyNode = (node: Node): Node => {
  if (node._tag === "file") return { _tag: "file", data: node.data, times: { ...node.times }, mode: node.mode }
  if (node._tag === "symlink") return { _tag: "symlink", target: node.target, times: { ...node.times } }
  const children = new Map<string, Node>()
  for (const [name, child] of node.children) children.set(name, copyNode(child))
  return { _tag: "directory", children, times: { ...node.times }, mode: node.mode }
}

/**
 * A point-in-time copy of a tree for snapshots and forks: directories are copied, file
 * buffers shared (structural sharing; later writes to either tree replace nodes, never bytes).
 */
export const copyTree = (tree: MemoryTree): MemoryTree => ({
  root: copyNode(tree.root) as DirectoryNode,
  usedBytes: tree.usedBytes
})

/** Makes `target`'s content a copy of `source`'s in one synchronous step (restore). */
export const replaceTree = (target: MemoryTree, source: MemoryTree, at: DateTime.Utc): void => {
  const copy = copyTree(source)
  target.root.children.clear()
  for (const [name, child] of copy.root.children) target.root.children.set(name, child)
  target.root.mode = copy.root.mode
  target.root.times.modified = at
  target.usedBytes = copy.usedBytes
}

const attach = (parent: DirectoryNode, name: string, node: Node, at: DateTime.Utc): void => {
  parent.children.set(name, node)
  parent.times.modified = at
}

const detach = (parent: DirectoryNode, name: string, at: DateTime.Utc): void => {
  parent.children.delete(name)
  parent.times.modified = at
}

type Result<A> = Either.Either<A, VolumeFsFailure>

const fsError = (path: Paths.Segments, reason: VolumeFsErrorReason, detail?: string): Result<never> =>
  Either.left(
    new VolumeFsError(detail === undefined ? { path: Paths.format(path), reason } : { path: Paths.format(path), reason, detail })
  )

const notFound = (path: Paths.Segments): Result<never> => Either.left(new PathNotFound({ path: Paths.format(path) }))

/** What the local backend answers for a symlink in the way (it never follows one). */
const symlinkRefused = (path: Paths.Segments, link: Paths.Segments = path): Result<never> =>
  Either.left(
    new InvalidPath({
      path: Paths.format(path),
      reason: link.length === path.length
        ? "is a symlink; host-side access never follows symlinks inside a volume"
        : `goes through the symlink ${Paths.format(link)}; host-side access never follows symlinks inside a volume`
    })
  )

/**
 * The node at `path`: a missing component is `PathNotFound`, a file where a directory
 * is needed `NotADirectory` (ENOENT and ENOTDIR of a POSIX walk).
 */
const find = (tree: MemoryTree, path: Paths.Segments): Result<Node> => {
  let node: Node = tree.root
  for (let i = 0; i < path.length; i++) {
    if (node._tag === "symlink") return symlinkRefused(path, path.slice(0, i))
    if (node._tag !== "directory") return fsError(path, "NotADirectory")
    const next: Node | undefined = node.children.get(path[i]!)
    if (next === undefined) return notFound(path)
    node = next
  }
  return Either.right(node)
}

interface Located {
  readonly parent: DirectoryNode
  readonly name: string
  readonly node: Node
}

/** An existing non-root node together with the directory holding it. */
const locate = (tree: MemoryTree, path: Paths.NonRootSegments): Result<Located> => {
  const { name, parent } = Paths.split(path)
  return Either.flatMap(find(tree, parent), (dir): Result<Located> => {
    if (dir._tag === "symlink") return symlinkRefused(path, parent)
    if (dir._tag !== "directory") return fsError(path, "NotADirectory")
    const node = dir.children.get(name)
    return node === undefined ? notFound(path) : Either.right({ parent: dir, name, node })
  })
}

/**
 * How to reach directory `dir`, creating what is missing (`mkdir -p`): the deepest
 * existing directory and the names still to create. Nothing is created yet, so the
 * caller can check everything else before it mutates.
 */
interface DirectoryPlan {
  readonly base: DirectoryNode
  readonly missing: ReadonlyArray<string>
}

const planDirectory = (tree: MemoryTree, dir: Paths.Segments, errorPath: Paths.Segments): Result<DirectoryPlan> => {
  let node: DirectoryNode = tree.root
  for (let i = 0; i < dir.length; i++) {
    const next = node.children.get(dir[i]!)
    if (next === undefined) return Either.right({ base: node, missing: dir.slice(i) })
    if (next._tag === "symlink") return symlinkRefused(errorPath, dir.slice(0, i + 1))
    if (next._tag !== "directory") return fsError(errorPath, "NotADirectory")
    node = next
  }
  return Either.right({ base: node, missing: [] })
}

/** Creates the directories a plan found missing and returns the planned directory. */
const materialize = (plan: DirectoryPlan, at: DateTime.Utc): DirectoryNode => {
  let node = plan.base
  for (const name of plan.missing) {
    const dir = newDirectory(at)
    attach(node, name, dir, at)
    node = dir
  }
  return node
}

/** The entry currently at `name` in a planned directory (none while it is still missing). */
const plannedEntry = (plan: DirectoryPlan, name: string): Node | undefined =>
  plan.missing.length === 0 ? plan.base.children.get(name) : undefined

const entryFields = (path: Paths.Segments, node: Node) => ({
  path: Paths.format(path),
  kind: node._tag,
  size: sizeOf(node),
  mode: node._tag === "symlink" ? SYMLINK_MODE : node.mode,
  uid: OWNER_UID,
  gid: OWNER_GID,
  modified: Option.some(node.times.modified),
  target: node._tag === "symlink" ? Option.some(node.target) : Option.none()
})

const metadata = (path: Paths.Segments, node: Node): FsMetadata => {
  const fields = entryFields(path, node)
  return new FsMetadata({
    ...fields,
    readonly: (fields.mode & 0o222) === 0,
    accessed: Option.some(node.times.accessed),
    created: Option.some(node.times.created)
  })
}

/** Byte order of names, as `ls` sorts in the C locale. */
const byName = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0)

/**
 * Options of {@link make}.
 */
export interface MemoryDriverOptions {
  /** Display name of the volume, for `VolumeNotFound`. */
  readonly volume: string
  /** The volume's tree, or `undefined` once the volume was removed (even if re-created since). */
  readonly tree: () => MemoryTree | undefined
  /**
   * A disk volume's size now (it may grow while the driver lives): writes that would take
   * usage above it fail with `NoSpace`.
   */
  readonly capacityBytes: () => Option.Option<number>
}

/**
 * An `FsDriver` over the tree `options.tree()` returns at each operation.
 */
export const make = (options: MemoryDriverOptions): FsDriver => {
  const { capacityBytes, volume } = options

  /**
   * Runs one synchronous, hence atomic, operation on the live tree; `at` is now by the
   * Effect clock (so `TestClock` drives file times).
   */
  const run = <A>(operation: (tree: MemoryTree, at: DateTime.Utc) => Result<A>): Effect.Effect<A, VolumeFsFailure> =>
    Effect.flatMap(DateTime.now, (at) => {
      const tree = options.tree()
      return tree === undefined ? Effect.fail(new VolumeNotFound({ volume: volume })) : operation(tree, at)
    })

  /** Like `run`, and tells the tree's watchers what the operation changed once it succeeded. */
  const mutate = (
    operation: (tree: MemoryTree, events: Array<WatchEvent>, at: DateTime.Utc) => Result<void>
  ): Effect.Effect<void, VolumeFsFailure> =>
    run((tree, at) => {
      const events: Array<WatchEvent> = []
      const result = operation(tree, events, at)
      if (Either.isRight(result)) for (const event of events) notify(tree, event)
      return result
    })

  /** `Created` events for the directories a plan is about to create. */
  const createdDirectories = (plan: DirectoryPlan, parent: Paths.Segments, events: Array<WatchEvent>): void => {
    const base = parent.slice(0, parent.length - plan.missing.length)
    plan.missing.forEach((_, i) => events.push({ _tag: "Created", path: Paths.format(parent.slice(0, base.length + i + 1)) }))
  }

  /** `NoSpace` if `growth` more bytes would not fit on a disk volume. */
  const checkCapacity = (tree: MemoryTree, path: Paths.Segments, growth: number): Result<void> => {
    const capacity = capacityBytes()
    return Option.isSome(capacity) && growth > 0 && tree.usedBytes + growth > capacity.value
      ? fsError(
        path,
        "NoSpace",
        `the disk volume holds ${capacity.value} bytes, ${tree.usedBytes} are used and ${growth} more were requested`
      )
      : Either.void
  }

  const readFile = (tree: MemoryTree, path: Paths.NonRootSegments): Result<Uint8Array> =>
    Either.flatMap(find(tree, path), (node) =>
      node._tag === "file"
        ? Either.right(node.data)
        : node._tag === "symlink"
        ? symlinkRefused(path)
        : fsError(path, "IsADirectory"))

  /**
   * Puts `data` at `path` (creating parents), as a rename of a finished temporary file
   * over the target would: a directory target is `IsADirectory`.
   */
  const publishFile = (
    tree: MemoryTree,
    path: Paths.NonRootSegments,
    node: (at: DateTime.Utc) => FileNode | SymlinkNode,
    parents: "create" | "existing",
    events: Array<WatchEvent>,
    at: DateTime.Utc
  ): Result<void> => {
    const { name, parent } = Paths.split(path)
    return Either.flatMap(planDirectory(tree, parent, path), (plan): Result<void> => {
      // The temporary file of a streaming write lives in the target's directory; if that
      // directory vanished meanwhile, the rename finds nothing to move.
      if (parents === "existing" && plan.missing.length > 0) return notFound(path)
      const existing = plannedEntry(plan, name)
      if (existing?._tag === "directory") return fsError(path, "IsADirectory")
      const created = node(at)
      const growth = sizeOf(created) - (existing === undefined ? 0 : sizeOf(existing))
      return Either.map(checkCapacity(tree, path, growth), () => {
        createdDirectories(plan, parent, events)
        attach(materialize(plan, at), name, created, at)
        tree.usedBytes += growth
        events.push({ _tag: existing === undefined ? "Created" : "Modified", path: Paths.format(path) })
      })
    })
  }

  const stat = (path: Paths.Segments) => run((tree) => Either.map(find(tree, path), (node) => metadata(path, node)))

  const list = (path: Paths.Segments) =>
    run((tree) =>
      Either.flatMap(find(tree, path), (node): Result<ReadonlyArray<FsEntry>> => {
        if (node._tag !== "directory") return fsError(path, "NotADirectory")
        // Temporary names (an import's staging directory) are never listed (see `fsDriver.ts`).
        const names = Array.from(node.children.keys()).filter((name) => !Paths.isTempName(name)).sort(byName)
        return Either.right(names.map((name) => {
          const entryPath = Paths.child(path, name)
          return new FsEntry(entryFields(entryPath, node.children.get(name)!))
        }))
      })
    )

  const read = (path: Paths.NonRootSegments) => run((tree) => Either.map(readFile(tree, path), copyBytes))

  const readStream = (path: Paths.NonRootSegments, chunkSize: number): Stream.Stream<Uint8Array, VolumeFsFailure> =>
    Stream.unwrap(
      Effect.map(
        // The stored buffer is never mutated, so it is a consistent snapshot; each chunk
        // is copied so a consumer cannot change the file through it.
        run((tree) => readFile(tree, path)),
        (data) =>
          Stream.unfold(0, (offset) =>
            offset >= data.byteLength
              ? Option.none()
              : Option.some([data.slice(offset, offset + chunkSize), offset + chunkSize] as const))
      )
    )

  const write = (path: Paths.NonRootSegments, data: Uint8Array, mode?: number) =>
    mutate((tree, events, at) => publishFile(tree, path, (at) => newFile(copyBytes(data), at, mode), "create", events, at))

  const openWriter = (path: Paths.NonRootSegments, mode?: number): Effect.Effect<FsWriter, VolumeFsFailure, Scope.Scope> =>
    Effect.gen(function*() {
      const { parent } = Paths.split(path)
      // Like the local driver's temporary file, the writer needs its directory now.
      yield* mutate((tree, events, at) =>
        Either.map(planDirectory(tree, parent, path), (plan) => {
          createdDirectories(plan, parent, events)
          materialize(plan, at)
        })
      )
      const state = yield* Effect.acquireRelease(
        Effect.sync(() => ({ chunks: [] as Array<Uint8Array>, size: 0, open: true })),
        // Whatever was not committed is dropped: the target keeps its old content.
        (state) =>
          Effect.sync(() => {
            state.open = false
            state.chunks = []
          })
      )
      const closedError = (what: string) => fsError(path, "Io", `${what} after the write was closed`)
      const writer: FsWriter = {
        write: (chunk) =>
          run((tree): Result<void> => {
            if (!state.open) return closedError("write")
            // A full disk fails the write that fills it, as ENOSPC does on the local backend.
            const existing = find(tree, path)
            const replaced = Either.isRight(existing) && existing.right._tag !== "directory" ? sizeOf(existing.right) : 0
            return Either.map(checkCapacity(tree, path, state.size + chunk.byteLength - replaced), () => {
              state.chunks.push(copyBytes(chunk))
              state.size += chunk.byteLength
            })
          }),
        commit: mutate((tree, events, at): Result<void> => {
          if (!state.open) return closedError("commit")
          const data = new Uint8Array(state.size)
          let offset = 0
          for (const chunk of state.chunks) {
            data.set(chunk, offset)
            offset += chunk.byteLength
          }
          return Either.map(publishFile(tree, path, (at) => newFile(data, at, mode), "existing", events, at), () => {
            state.open = false
            state.chunks = []
          })
        })
      }
      return writer
    })

  const mkdir = (path: Paths.Segments) =>
    mutate((tree, events, at): Result<void> => {
      if (!Paths.isNonRoot(path)) return Either.void
      const { name, parent } = Paths.split(path)
      return Either.flatMap(planDirectory(tree, parent, path), (plan): Result<void> => {
        const existing = plannedEntry(plan, name)
        if (existing?._tag === "directory") return Either.void
        if (existing?._tag === "symlink") return symlinkRefused(path)
        if (existing !== undefined) return fsError(path, "AlreadyExists")
        const full = { base: plan.base, missing: [...plan.missing, name] }
        createdDirectories(full, path, events)
        materialize(full, at)
        return Either.void
      })
    })

  const remove = (path: Paths.NonRootSegments) =>
    mutate((tree, events, at) =>
      Either.flatMap(locate(tree, path), ({ name, node, parent }): Result<void> => {
        if (node._tag === "directory") return fsError(path, "IsADirectory")
        detach(parent, name, at)
        tree.usedBytes -= sizeOf(node)
        events.push({ _tag: "Removed", path: Paths.format(path) })
        return Either.void
      })
    )

  const removeDir = (path: Paths.NonRootSegments) =>
    mutate((tree, events, at) =>
      Either.flatMap(locate(tree, path), ({ name, node, parent }): Result<void> => {
        if (node._tag !== "directory") return fsError(path, "NotADirectory")
        detach(parent, name, at)
        tree.usedBytes -= bytesBelow(node)
        events.push({ _tag: "Removed", path: Paths.format(path) })
        return Either.void
      })
    )

  /** POSIX `rename(2)` outcomes for a target that exists. */
  const renameOnto = (source: Node, target: Node, to: Paths.Segments): Result<void> => {
    if (source._tag !== "directory") return target._tag === "directory" ? fsError(to, "IsADirectory") : Either.void
    if (target._tag !== "directory") return fsError(to, "NotADirectory")
    return target.children.size > 0 ? fsError(to, "DirectoryNotEmpty") : Either.void
  }

  const rename = (from: Paths.NonRootSegments, to: Paths.NonRootSegments) =>
    mutate((tree, events, at) =>
      Either.flatMap(locate(tree, from), (source) => {
        // Linux refuses a target that is an ancestor of the source before it looks at kinds.
        if (to.length < from.length && Paths.isWithin(from, to)) return fsError(to, "DirectoryNotEmpty")
        const { name, parent } = Paths.split(to)
        return Either.flatMap(planDirectory(tree, parent, to), (plan): Result<void> => {
          const existing = plannedEntry(plan, name)
          const allowed = existing === undefined ? Either.void : renameOnto(source.node, existing, to)
          return Either.map(allowed, () => {
            // Only a replaced file or link holds bytes: a replaced directory was empty.
            if (existing !== undefined && existing._tag !== "directory") tree.usedBytes -= sizeOf(existing)
            createdDirectories(plan, parent, events)
            detach(source.parent, source.name, at)
            attach(materialize(plan, at), name, source.node, at)
            events.push({ _tag: "Renamed", from: Paths.format(from), path: Paths.format(to) })
          })
        })
      })
    )

  const copy = (from: Paths.NonRootSegments, to: Paths.NonRootSegments) =>
    mutate((tree, events, at) =>
      Either.flatMap(find(tree, from), (source) => {
        if (source._tag !== "directory") {
          return publishFile(tree, to, (at) => cloneNode(source, at) as FileNode | SymlinkNode, "create", events, at)
        }
        const { name, parent } = Paths.split(to)
        return Either.flatMap(planDirectory(tree, parent, to), (plan): Result<void> => {
          if (plannedEntry(plan, name) !== undefined) return fsError(to, "AlreadyExists")
          const bytes = bytesBelow(source)
          return Either.map(checkCapacity(tree, to, bytes), () => {
            createdDirectories(plan, parent, events)
            attach(materialize(plan, at), name, cloneNode(source, at), at)
            tree.usedBytes += bytes
            events.push({ _tag: "Created", path: Paths.format(to) })
          })
        })
      })
    )

  const measure = (path: Paths.Segments) =>
    run((tree) => {
      if (!Paths.isNonRoot(path)) return Either.right(tree.usedBytes)
      const node = find(tree, path)
      return Either.right(Either.isRight(node) ? bytesBelow(node.right) : 0)
    })

  const symlink = (target: string, path: Paths.NonRootSegments) =>
    mutate((tree, events, at) => {
      const { name, parent } = Paths.split(path)
      return Either.flatMap(planDirectory(tree, parent, path), (plan): Result<void> =>
        plannedEntry(plan, name) !== undefined
          ? fsError(path, "AlreadyExists")
          : publishFile(tree, path, (at) => newSymlink(target, at), "create", events, at))
    })

  const readlink = (path: Paths.NonRootSegments) =>
    run((tree) =>
      Either.flatMap(find(tree, path), (node) =>
        node._tag === "symlink" ? Either.right(node.target) : fsError(path, "InvalidData", "not a symlink"))
    )

  const chmod = (path: Paths.Segments, mode: number) =>
    mutate((tree, events) =>
      Either.flatMap(find(tree, path), (node): Result<void> => {
        if (node._tag === "symlink") return symlinkRefused(path)
        node.mode = mode
        if (Paths.isNonRoot(path)) events.push({ _tag: "Modified", path: Paths.format(path) })
        return Either.void
      })
    )

  const watch = (path: Paths.Segments, recursive: boolean) =>
    Stream.unwrap(
      Effect.map(
        run((tree) =>
          Either.flatMap(find(tree, path), (node) =>
            node._tag === "directory" ? Either.right(tree) : fsError(path, "NotADirectory", "only directories can be watched"))
        ),
        (tree) =>
          watchTree({ tree, path, recursive, alive: () => options.tree() === tree, gone: new VolumeNotFound({ volume }) })
      )
    )

  const fileOps = { stat, list, read, readStream, openWriter, write, mkdir, remove, removeDir, rename, copy, measure }
  return { ...fileOps, symlink, readlink, chmod, watch }
}
