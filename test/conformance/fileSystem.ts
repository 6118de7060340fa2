/**
 * SPEC §11: `VolumeFs.layerFileSystem` / `toFileSystem` — ordinary `@effect/platform`
 * `FileSystem` code runs against a volume, with the platform's types and errors.
 */
import { FileSystem } from "@effect/platform"
import { assert, describe } from "@effect/vitest"
import { Chunk, Effect, Option, Stream } from "effect"
import * as VolumeFs from "../../src/VolumeFs.js"
import type { Context } from "./support.js"
import { createVolume, utf8 } from "./support.js"

/** A fresh volume, and a program run with its `FileSystem`. */
const withVolumeFileSystem = <A, E>(program: Effect.Effect<A, E, FileSystem.FileSystem>) =>
  Effect.flatMap(createVolume("platform"), (vol) =>
    program.pipe(Effect.provide(VolumeFs.layerFileSystem(vol)), Effect.map((result) => ({ result, vol }))))

/** The `SystemError` reason (or `BadArgument`) a failed platform call reports. */
const failureOf = <A>(effect: Effect.Effect<A, unknown>) =>
  Effect.map(Effect.flip(effect), (error) => {
    const e = error as { readonly _tag: string; readonly reason?: string }
    return e._tag === "SystemError" ? `SystemError:${e.reason}` : e._tag
  })

export const fileSystemTests = ({ test }: Context) => {
  describe("FileSystem over a volume", () => {
    test("existing Effect code runs unchanged (writeFileString, readDirectory, readFileString)", () =>
      Effect.gen(function*() {
        const { result, vol } = yield* withVolumeFileSystem(Effect.gen(function*() {
          const pfs = yield* FileSystem.FileSystem
          yield* pfs.makeDirectory("/notes", { recursive: true })
          yield* pfs.writeFileString("/notes/a.txt", "hi")
          yield* pfs.writeFileString("/notes/b.txt", "there")
          return {
            names: (yield* pfs.readDirectory("/notes")).sort(),
            text: yield* pfs.readFileString("/notes/a.txt"),
            exists: [yield* pfs.exists("/notes/a.txt"), yield* pfs.exists("/notes/none")]
          }
        }))
        assert.deepStrictEqual(result.names, ["a.txt", "b.txt"])
        assert.strictEqual(result.text, "hi")
        assert.deepStrictEqual(result.exists, [true, false])
        // The same files, seen through the volume's own API.
        assert.strictEqual(yield* vol.fs().readToString("/notes/b.txt"), "there")
      }))

    test("stream, sink, stat, copy, rename, remove, truncate and append behave as on a disk", () =>
      Effect.gen(function*() {
        const { result } = yield* withVolumeFileSystem(Effect.gen(function*() {
          const pfs = yield* FileSystem.FileSystem
          yield* Stream.make(utf8("hello "), utf8("world")).pipe(Stream.run(pfs.sink("/s/out.txt")))
          const streamed = yield* pfs.stream("/s/out.txt", { chunkSize: FileSystem.Size(4) }).pipe(Stream.runCollect)
          const window = yield* pfs.stream("/s/out.txt", { offset: FileSystem.Size(6), bytesToRead: FileSystem.Size(3) }).pipe(
            Stream.runCollect,
            Effect.map((chunks) => Buffer.concat(Chunk.toArray(chunks)).toString())
          )
          const info = yield* pfs.stat("/s/out.txt")
          const dirInfo = yield* pfs.stat("/s")
          yield* pfs.copyFile("/s/out.txt", "/s/copy.txt")
          yield* pfs.rename("/s/copy.txt", "/s/moved.txt")
          yield* pfs.writeFile("/s/moved.txt", utf8("!"), { flag: "a" })
          yield* pfs.truncate("/s/out.txt", 5)
          yield* pfs.makeDirectory("/s/deep/er", { recursive: true })
          yield* pfs.writeFileString("/s/deep/er/f", "x")
          const recursive = (yield* pfs.readDirectory("/s", { recursive: true })).sort()
          yield* pfs.remove("/s/deep", { recursive: true })
          return {
            chunks: Chunk.toArray(streamed).map((c) => c.byteLength),
            window,
            info,
            dirInfo,
            moved: yield* pfs.readFileString("/s/moved.txt"),
            truncated: yield* pfs.readFileString("/s/out.txt"),
            recursive,
            after: (yield* pfs.readDirectory("/s")).sort()
          }
        }))
        assert.deepStrictEqual(result.chunks, [4, 4, 3])
        assert.strictEqual(result.window, "wor")
        assert.strictEqual(result.info.type, "File")
        assert.strictEqual(result.info.size, FileSystem.Size(11))
        assert.strictEqual(result.info.mode & 0o777, 0o644)
        assert.isTrue(Option.isSome(result.info.mtime))
        assert.strictEqual(result.dirInfo.type, "Directory")
        assert.strictEqual(result.moved, "hello world!")
        assert.strictEqual(result.truncated, "hello")
        assert.deepStrictEqual(result.recursive, ["deep", "deep/er", "deep/er/f", "moved.txt", "out.txt"])
        assert.deepStrictEqual(result.after, ["moved.txt", "out.txt"])
      }))

    test("open reads and writes a file, and publishes it when the scope closes", () =>
      Effect.gen(function*() {
        const { result } = yield* withVolumeFileSystem(Effect.gen(function*() {
          const pfs = yield* FileSystem.FileSystem
          yield* Effect.scoped(Effect.gen(function*() {
            const file = yield* pfs.open("/f.bin", { flag: "w" })
            yield* file.writeAll(utf8("abcdef"))
            yield* file.seek(2, "start")
            yield* file.writeAll(utf8("XY"))
          }))
          const read = yield* Effect.scoped(Effect.gen(function*() {
            const file = yield* pfs.open("/f.bin")
            yield* file.seek(1, "start")
            return yield* file.readAlloc(3)
          }))
          return { whole: yield* pfs.readFileString("/f.bin"), read }
        }))
        assert.strictEqual(result.whole, "abXYef")
        assert.deepStrictEqual(Option.map(result.read, (b) => Buffer.from(b).toString()), Option.some("bXY"))
      }))

    test("links, modes and scoped temporary directories", () =>
      Effect.gen(function*() {
        const { result, vol } = yield* withVolumeFileSystem(Effect.gen(function*() {
          const pfs = yield* FileSystem.FileSystem
          yield* pfs.writeFileString("/bin/run.sh", "#!/bin/sh\n", { mode: 0o755 })
          yield* pfs.symlink("run.sh", "/bin/run")
          yield* pfs.chmod("/bin/run.sh", 0o700)
          const temp = yield* Effect.scoped(Effect.gen(function*() {
            const dir = yield* pfs.makeTempDirectoryScoped({ prefix: "job-" })
            yield* pfs.writeFileString(`${dir}/scratch`, "s")
            return { dir, inside: yield* pfs.exists(`${dir}/scratch`) }
          }))
          return {
            link: yield* pfs.readLink("/bin/run"),
            linkType: (yield* pfs.stat("/bin/run")).type,
            mode: (yield* pfs.stat("/bin/run.sh")).mode & 0o7777,
            temp,
            tempGone: !(yield* pfs.exists(temp.dir))
          }
        }))
        assert.strictEqual(result.link, "run.sh")
        assert.strictEqual(result.linkType, "SymbolicLink")
        assert.strictEqual(result.mode, 0o700)
        assert.isTrue(result.temp.inside)
        assert.isTrue(result.temp.dir.startsWith("/tmp/job-"))
        assert.isTrue(result.tempGone)
        assert.strictEqual((yield* vol.fs().stat("/bin/run.sh")).mode, 0o700)
      }))

    test("failures are the platform's errors; nothing outside the volume is reachable", () =>
      Effect.gen(function*() {
        const { result } = yield* withVolumeFileSystem(Effect.gen(function*() {
          const pfs = yield* FileSystem.FileSystem
          yield* pfs.writeFileString("/file", "x")
          yield* pfs.makeDirectory("/dir")
          yield* pfs.writeFileString("/dir/child", "c")
          return {
            missing: yield* failureOf(pfs.readFile("/missing")),
            escape: yield* failureOf(pfs.readFileString("../../etc/passwd")),
            exists: yield* failureOf(pfs.makeDirectory("/dir")),
            notEmpty: yield* failureOf(pfs.remove("/dir")),
            isDirectory: yield* failureOf(pfs.readFile("/dir")),
            chown: yield* failureOf(pfs.chown("/file", 0, 0)),
            forced: yield* pfs.remove("/nothing", { force: true }).pipe(Effect.as("ok"))
          }
        }))
        assert.deepStrictEqual(result, {
          missing: "SystemError:NotFound",
          escape: "BadArgument",
          exists: "SystemError:AlreadyExists",
          notEmpty: "SystemError:Unknown",
          isDirectory: "SystemError:BadResource",
          chown: "SystemError:PermissionDenied",
          forced: "ok"
        })
      }))
  })
}
