/**
 * The local backend's own behaviour, beyond the conformance suite: the layout on disk,
 * persistence across reopen, attachments, and recovery of what crashed processes leave.
 */
import { assert, describe, it } from "@effect/vitest"
import { ConfigProvider, Effect, Either, Exit, Fiber, Option, Schedule } from "effect"
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { homedir } from "node:os"
import * as NodePath from "node:path"
import { LocalAttachments } from "../../src/internal/local/attachments.js"
import * as LocalBackend from "../../src/LocalBackend.js"
import * as Size from "../../src/Size.js"
import * as Volume from "../../src/Volume.js"
import { onFirstEntry } from "./fixtures/child.js"
import { assertConsistent, deadPid, entries, makeHome, withDatabase, withHome } from "./fixtures/home.js"

const MiB = 1024 * 1024

const expectTag = <A, E extends { readonly _tag: string }, R, const T extends E["_tag"]>(
  effect: Effect.Effect<A, E, R>,
  tag: T
): Effect.Effect<Extract<E, { readonly _tag: T }>, never, R> =>
  Effect.map(Effect.either(effect), (result) => {
    if (Either.isRight(result)) assert.fail(`expected ${tag}, got success`)
    assert.strictEqual(result.left._tag, tag)
    return result.left as Extract<E, { readonly _tag: T }>
  })

const attachments = Effect.flatMap(Effect.serviceOption(LocalAttachments), (found) =>
  Option.match(found, {
    onNone: () => Effect.dieMessage("LocalBackend.layer provides LocalAttachments"),
    onSome: Effect.succeed
  }))

describe("LocalBackend layout", () => {
  it.scopedLive("directory and disk volumes live where the spec says, with the database beside them", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const dir = yield* Volume.builder("Data").quota(Size.mib(5)).label("team", "a").create()
        const disk = yield* Volume.builder("Img").disk().size(Size.mib(64)).create()

        assert.isTrue(existsSync(NodePath.join(home, "db", "volumes.db")))
        const dataDir = NodePath.join(home, "volumes", "data", "data")
        assert.isTrue(statSync(dataDir).isDirectory())
        assert.strictEqual(statSync(dataDir).mode & 0o7777, 0o755)
        assert.deepStrictEqual(entries(NodePath.join(home, "volumes", "data")), ["data"])
        assert.strictEqual(yield* dir.path(), dataDir)
        const local = Option.getOrThrow(dir.local)
        assert.strictEqual(local.home, home)
        assert.strictEqual(local.directory, NodePath.join(home, "volumes", "data"))
        assert.deepStrictEqual(local.dataPath, Option.some(dataDir))
        assert.isTrue(Option.isNone(dir.diskPath))

        const image = NodePath.join(home, "volumes", "img", "disk.raw")
        assert.deepStrictEqual(entries(NodePath.join(home, "volumes", "img")), ["disk.raw"])
        assert.deepStrictEqual(disk.diskPath, Option.some(image))
        assert.strictEqual(statSync(image).size, 64 * MiB)
        assert.deepStrictEqual(Option.getOrThrow(disk.local).dataPath, Option.none())
        yield* expectTag(disk.path(), "Unsupported")

        // Real usage: a sparse image allocates its metadata only; files count their bytes.
        const measured = yield* Volume.get("img")
        assert.isAbove(measured.usedBytes, 0)
        assert.isBelow(measured.usedBytes, 64 * MiB)
        yield* dir.fs().write("a.txt", "12345")
        assert.strictEqual((yield* Volume.get("data")).usedBytes, 5)
        // list reports the last measurement.
        const listed = yield* Volume.list()
        assert.deepStrictEqual(listed.map((v) => [v.name, v.usedBytes]), [["Img", measured.usedBytes], ["Data", 5]])

        assert.deepStrictEqual(entries(NodePath.join(home, "staging")), [])
        assert.deepStrictEqual(entries(NodePath.join(home, "trash")), [])
        yield* expectTag(Volume.getDefault(), "Unsupported")
      }).pipe(withHome(home))
    }))

  it.scopedLive("names are case-insensitive on disk too; remove leaves nothing behind", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* Volume.builder("Cache").create()
        yield* expectTag(Volume.builder("CACHE").disk().size(Size.mib(64)).create(), "VolumeAlreadyExists")
        assert.deepStrictEqual(entries(NodePath.join(home, "volumes")), ["cache"])
        assert.strictEqual((yield* Volume.get("cAcHe")).name, "Cache")
        yield* (yield* Volume.get("cache")).fs().write("x/y.txt", "data")
        yield* Volume.remove("CACHE")
        assert.deepStrictEqual(entries(NodePath.join(home, "volumes")), [])
        assert.deepStrictEqual(entries(NodePath.join(home, "trash")), [])
        yield* expectTag(Volume.get("Cache"), "VolumeNotFound")
        const again = yield* Volume.builder("cache").create()
        assert.deepStrictEqual(yield* again.fs().list("/"), [])
      }).pipe(withHome(home))
    }))

  it.scopedLive("volumes, labels and files persist across reopening the home", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const created = yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("keep").quota(Size.mib(3)).label("b", "2").label("a", "1").create()
        yield* vol.fs().write("notes/today.txt", "hello")
        return vol
      }).pipe(withHome(home))
      const reopened = yield* Volume.get("KEEP").pipe(withHome(home))
      assert.strictEqual(reopened.name, "keep")
      assert.deepStrictEqual(reopened.quotaMib, Option.some(3))
      assert.deepStrictEqual(reopened.labels, [["b", "2"], ["a", "1"]])
      assert.strictEqual(reopened.createdAt.epochMillis, created.createdAt.epochMillis)
      assert.strictEqual(reopened.usedBytes, 5)
      // A handle belongs to the layer that made it: read through one got from the reopened home.
      const text = yield* Effect.flatMap(Volume.get("keep"), (vol) => vol.fs().readToString("notes/today.txt")).pipe(withHome(home))
      assert.strictEqual(text, "hello")
    }))

  it.scopedLive("the home comes from the option, else EFFECT_VOLUMES_HOME, else ~/.effect-volumes", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const fromEnv = ConfigProvider.fromMap(new Map([["EFFECT_VOLUMES_HOME", home]]))
      const empty = ConfigProvider.fromMap(new Map())
      assert.strictEqual(yield* LocalBackend.resolveHome().pipe(Effect.withConfigProvider(fromEnv)), home)
      assert.strictEqual(
        yield* LocalBackend.resolveHome({ home: "relative/dir" }).pipe(Effect.withConfigProvider(fromEnv)),
        NodePath.resolve("relative/dir")
      )
      assert.strictEqual(
        yield* LocalBackend.resolveHome().pipe(Effect.withConfigProvider(empty)),
        NodePath.join(homedir(), ".effect-volumes")
      )
      yield* Volume.builder("via-env").create().pipe(
        Effect.provide(LocalBackend.layer()),
        Effect.withConfigProvider(fromEnv)
      )
      assert.deepStrictEqual(entries(NodePath.join(home, "volumes")), ["via-env"])
    }))

  it.scopedLive("a home that cannot hold a database fails with StorageError", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      mkdirSync(NodePath.join(home, "db"))
      writeFileSync(NodePath.join(home, "db", "volumes.db"), "this is not a database, just text ".repeat(200))
      const error = yield* expectTag(Volume.list().pipe(withHome(home)), "StorageError")
      assert.include(error.message, "volumes.db")
      assert.strictEqual(error.reason, "Corrupt", "callers can tell a broken database from a busy one")
    }))
})

describe("LocalBackend list", () => {
  // `list` hands out the report it made before for a record that has not changed
  // (records.ts); any change of the record, made here or by another process, must show.
  it.scopedLive("reuses a report only while its record is unchanged, in this process or another", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const infoOf = (name: string) =>
        Effect.map(Volume.list(), (all) => Option.getOrThrow(Option.fromNullable(all.find((v) => v.name === name))).info)
      yield* Effect.gen(function*() {
        const a = yield* Volume.builder("a").create()
        yield* Volume.builder("b").create()
        const first = yield* infoOf("a")
        assert.strictEqual(yield* infoOf("a"), first)
        yield* a.fs().write("/f", new Uint8Array(1000))
        const written = yield* infoOf("a")
        assert.notStrictEqual(written, first)
        assert.strictEqual(written.usedBytes, 1000)
        yield* Volume.update("a", { labels: { set: { team: "x" } } })
        assert.deepStrictEqual((yield* infoOf("a")).labels, [["team", "x"]])
        // Changed by another backend instance (another process as far as this one knows).
        yield* Volume.update("a", { labels: { set: { team: "y" } } }).pipe(withHome(home))
        assert.deepStrictEqual((yield* infoOf("a")).labels, [["team", "y"]])
        yield* Volume.remove("a").pipe(withHome(home))
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name), ["b"])
        yield* Volume.builder("a").create().pipe(withHome(home))
        assert.deepStrictEqual((yield* infoOf("a")).labels, [])
      }).pipe(withHome(home))
    }))
})

describe("LocalBackend create", () => {
  it.scopedLive("a create that fails leaves no record and no files, and the name stays free", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        // Break the staging area after the home was opened.
        rmSync(NodePath.join(home, "staging"), { recursive: true })
        writeFileSync(NodePath.join(home, "staging"), "in the way")
        yield* expectTag(Volume.builder("doomed").create(), "StorageError")
        assert.deepStrictEqual(yield* Volume.list(), [])
        const rows = yield* withDatabase(home, (sql) => sql`SELECT key FROM volumes`)
        assert.deepStrictEqual(rows, [])
        rmSync(NodePath.join(home, "staging"))
        mkdirSync(NodePath.join(home, "staging"))
        yield* Volume.builder("doomed").create()
      }).pipe(withHome(home))
      yield* assertConsistent(home)
    }))

  it.scopedLive("an interrupted create (while the image is formatted) leaves nothing behind", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const staged = yield* Effect.fork(onFirstEntry(NodePath.join(home, "staging"), () => {}))
        const creating = yield* Effect.fork(Volume.builder("big").disk().size(Size.gib(4)).create())
        yield* Fiber.join(staged)
        const exit = yield* Fiber.interrupt(creating)
        assert.isTrue(Exit.isInterrupted(exit), "interrupted while formatting")
        assert.deepStrictEqual(entries(NodePath.join(home, "staging")), [])
        assert.deepStrictEqual(entries(NodePath.join(home, "volumes")), [])
        assert.deepStrictEqual(yield* withDatabase(home, (sql) => sql`SELECT key FROM volumes`), [])
        yield* Volume.builder("big").create()
      }).pipe(withHome(home))
      yield* assertConsistent(home)
    }))
})

describe("LocalBackend attachments", () => {
  it.scopedLive("remove is refused while a holder is attached and allowed once it lets go", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* Volume.builder("shared").create()
        const seam = yield* attachments
        yield* Effect.scoped(Effect.gen(function*() {
          yield* seam.acquire("shared", { holder: "sandbox api", mode: "rw" })
          yield* seam.acquire("shared", { holder: "sandbox worker", mode: "rw" }) // directories: many writers
          assert.deepStrictEqual([...(yield* seam.holders("shared"))].sort(), ["sandbox api", "sandbox worker"])
          const error = yield* expectTag(Volume.remove("Shared"), "VolumeInUse")
          assert.strictEqual(error.volume, "Shared")
          assert.deepStrictEqual([...error.holders].sort(), ["sandbox api", "sandbox worker"])
          assert.include(error.message, "sandbox api")
        }))
        assert.deepStrictEqual(yield* seam.holders("shared"), [])
        yield* Volume.remove("shared")
        yield* expectTag(Effect.scoped(seam.acquire("shared", { holder: "late", mode: "ro" })), "VolumeNotFound")
      }).pipe(withHome(home))
    }))

  it.scopedLive("a disk volume has one writer or many readers, host fs included", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const disk = yield* Volume.builder("img").disk().size(Size.mib(64)).create()
        const seam = yield* attachments
        yield* Effect.scoped(Effect.gen(function*() {
          yield* seam.acquire("img", { holder: "sandbox a", mode: "ro" })
          yield* seam.acquire("img", { holder: "sandbox b", mode: "ro" })
          const refused = yield* expectTag(
            Effect.scoped(seam.acquire("img", { holder: "sandbox c", mode: "rw" })),
            "VolumeInUse"
          )
          assert.deepStrictEqual([...refused.holders].sort(), ["sandbox a", "sandbox b"])
          // Host-side access writes into the image, so it is refused too.
          yield* expectTag(disk.fs().write("f.txt", "x"), "VolumeInUse")
        }))
        yield* Effect.scoped(Effect.gen(function*() {
          yield* seam.acquire("img", { holder: "sandbox w", mode: "rw" })
          yield* expectTag(Effect.scoped(seam.acquire("img", { holder: "sandbox r", mode: "ro" })), "VolumeInUse")
          yield* expectTag(disk.fs().list("/"), "VolumeInUse")
        }))
        yield* disk.fs().write("f.txt", "free again")
        assert.strictEqual(yield* disk.fs().readToString("f.txt"), "free again")
        // The mount (and its attachment) is kept a moment for the next operation of a burst,
        // then let go.
        yield* seam.holders("img").pipe(
          Effect.repeat({ until: (holders) => holders.length === 0, schedule: Schedule.spaced("10 millis") }),
          Effect.timeoutFail({ duration: "20 seconds", onTimeout: () => "host fs never let go" })
        )
      }).pipe(withHome(home))
    }))

  it.scopedLive("records of dead holders are ignored and cleaned", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Volume.builder("held").create().pipe(withHome(home))
      const pid = deadPid()
      yield* withDatabase(home, (sql) =>
        sql`INSERT INTO attachments (id, key, holder, pid, pid_start, mode, created_at)
            VALUES ('dead', 'held', 'sandbox gone', ${pid}, 1, 'rw', 0)`)
      yield* Effect.gen(function*() {
        assert.deepStrictEqual(yield* (yield* attachments).holders("held"), [])
        yield* Volume.remove("held")
      }).pipe(withHome(home))
      assert.deepStrictEqual(yield* withDatabase(home, (sql) => sql`SELECT id FROM attachments`), [])
    }))
})

describe("LocalBackend recovery", () => {
  it.scopedLive("leftovers of crashed processes are cleaned when the home opens, and the names are free", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const keep = yield* Volume.builder("keep").create()
        yield* keep.fs().write("kept.txt", "still here")
      }).pipe(withHome(home))

      const pid = deadPid()
      const volumes = NodePath.join(home, "volumes")
      const plantDir = (...segments: Array<string>) => {
        const dir = NodePath.join(home, ...segments)
        mkdirSync(dir, { recursive: true })
        writeFileSync(NodePath.join(dir, "junk.bin"), "junk")
      }
      // A creator died after publishing its directory but before marking it ready.
      plantDir("volumes", "ghost", "data")
      // A remover died before moving the data away.
      plantDir("volumes", "half", "data")
      // A directory without a record (copied in by hand, or left by an older crash).
      plantDir("volumes", "stale", "data")
      // A creator died while building.
      plantDir("staging", `fresh.${pid}.1.abcdef`, "data")
      // A remover died while emptying the trash.
      plantDir("trash", "old.123456", "data", "deep")
      // A creator in a live process (this one) must be left alone.
      const liveStaging = `busy.${process.pid}.0.abcdef`
      plantDir("staging", liveStaging)
      yield* withDatabase(home, (sql) =>
        Effect.all([
          sql`INSERT INTO volumes (key, name, kind, labels, created_at, used_bytes, state, owner_pid, owner_start)
              VALUES ('ghost', 'Ghost', 'directory', '[]', 0, 0, 'creating', ${pid}, 1)`,
          sql`INSERT INTO volumes (key, name, kind, labels, created_at, used_bytes, state, owner_pid, owner_start)
              VALUES ('half', 'half', 'directory', '[]', 0, 0, 'removing', ${pid}, 1)`,
          sql`INSERT INTO volumes (key, name, kind, labels, created_at, used_bytes, state, owner_pid, owner_start)
              VALUES ('vanished', 'vanished', 'disk', '[]', 0, 0, 'removing', ${pid}, 1)`
        ]))

      yield* Effect.gen(function*() {
        assert.deepStrictEqual((yield* Volume.list()).map((v) => v.name), ["keep"])
        assert.deepStrictEqual(entries(volumes), ["keep"])
        assert.deepStrictEqual(entries(NodePath.join(home, "staging")), [liveStaging])
        assert.deepStrictEqual(entries(NodePath.join(home, "trash")), [])
        assert.strictEqual(yield* (yield* Volume.get("keep")).fs().readToString("kept.txt"), "still here")
        for (const name of ["ghost", "half", "stale", "fresh", "vanished"]) {
          yield* expectTag(Volume.get(name), "VolumeNotFound")
          const vol = yield* Volume.builder(name).create()
          assert.deepStrictEqual(yield* vol.fs().list("/"), [], `${name} starts empty`)
        }
      }).pipe(withHome(home))
      rmSync(NodePath.join(home, "staging", liveStaging), { recursive: true })
      const all = yield* assertConsistent(home)
      assert.strictEqual(all.length, 6)
    }))

  it.scopedLive("create takes over a name whose creator died, without waiting for a reopen", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const pid = deadPid()
        mkdirSync(NodePath.join(home, "volumes", "taken", "data"), { recursive: true })
        yield* withDatabase(home, (sql) =>
          sql`INSERT INTO volumes (key, name, kind, labels, created_at, used_bytes, state, owner_pid, owner_start)
              VALUES ('taken', 'taken', 'directory', '[]', 0, 0, 'creating', ${pid}, 1)`)
        yield* expectTag(Volume.remove("taken"), "VolumeNotFound")
        const vol = yield* Volume.builder("Taken").disk().size(Size.mib(64)).create()
        assert.strictEqual(vol.kind, "disk")
        assert.deepStrictEqual(entries(NodePath.join(home, "volumes", "taken")), ["disk.raw"])
      }).pipe(withHome(home))
      yield* assertConsistent(home)
    }))

  it.scopedLive("a live creator's claim is respected: the second creator gets VolumeAlreadyExists", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* withDatabase(home, (sql) =>
          sql`INSERT INTO volumes (key, name, kind, labels, created_at, used_bytes, state, owner_pid, owner_start)
              VALUES ('busy', 'busy', 'directory', '[]', 0, 0, 'creating', ${process.pid}, 0)`)
        yield* expectTag(Volume.builder("busy").create(), "VolumeAlreadyExists")
        yield* expectTag(Volume.get("busy"), "VolumeNotFound")
        assert.deepStrictEqual(yield* Volume.list(), [])
      }).pipe(withHome(home))
    }))

  it.scopedLive("temporary files of a writer that died are removed when the volume is next measured", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      const pid = deadPid()
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("notes").create()
        yield* vol.fs().write("dir/doc.txt", "old")
        const dataDir = yield* vol.path()
        const orphan = NodePath.join(dataDir, "dir", `.effect-volumes-tmp-${pid}-abc-def`)
        const mine = NodePath.join(dataDir, `.effect-volumes-tmp-${process.pid}-abc-def`)
        writeFileSync(orphan, "half written")
        writeFileSync(mine, "in progress")
        // Planted by hand, so no writer marker says a crash happened: measure explicitly.
        const got = yield* Volume.measure("notes")
        assert.isFalse(existsSync(orphan), "the dead writer's temp file is gone")
        assert.isTrue(existsSync(mine), "a live writer's temp file stays")
        assert.strictEqual(got.usedBytes, 3 + "in progress".length)
        assert.strictEqual(readFileSync(NodePath.join(dataDir, "dir", "doc.txt"), "utf8"), "old")
        rmSync(mine)
      }).pipe(withHome(home))
    }))

  it.scopedLive("a remove that cannot move the data away fails cleanly and keeps the volume", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        const vol = yield* Volume.builder("pinned").create()
        yield* vol.fs().write("f.txt", "data")
        rmSync(NodePath.join(home, "trash"), { recursive: true })
        writeFileSync(NodePath.join(home, "trash"), "in the way")
        yield* expectTag(Volume.remove("pinned"), "StorageError")
        assert.strictEqual(yield* (yield* Volume.get("pinned")).fs().readToString("f.txt"), "data")
        rmSync(NodePath.join(home, "trash"))
        mkdirSync(NodePath.join(home, "trash"))
        yield* Volume.remove("pinned")
        yield* expectTag(Volume.get("pinned"), "VolumeNotFound")
      }).pipe(withHome(home))
      yield* assertConsistent(home)
    }))
})
