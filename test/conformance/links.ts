/**
 * SPEC §11: symlinks and permission bits — created, read, kept by copy and rename, refused
 * where an operation would follow a link, and bad input reported as typed failures.
 */
import { assert, describe } from "@effect/vitest"
import { Effect, Option } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import type { VolumeFs } from "../../src/VolumeFs.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure, expectFsError, names } from "./support.js"

/** A fresh directory volume's file system. */
const freshFs = () => Effect.map(createVolume("links"), (vol) => vol.fs())

/** kind, mode and target of every entry below `dir`, depth first, by path. */
const describeTree = (fs: VolumeFs, dir: string): Effect.Effect<Array<string>, unknown> =>
  Effect.gen(function*() {
    const out: Array<string> = []
    for (const entry of yield* fs.list(dir)) {
      const relative = entry.path.slice(dir.length)
      const target = Option.getOrElse(entry.target, () => "")
      out.push(`${relative} ${entry.kind} ${entry.mode.toString(8)} ${target}`)
      if (entry.kind === "file") out.push(`${relative} = ${yield* fs.readToString(entry.path)}`)
      if (entry.kind === "directory") {
        for (const line of yield* describeTree(fs, entry.path)) out.push(`${relative}${line}`)
      }
    }
    return out
  })

/** A tree as people seed volumes with: a bin link, an executable script, a private directory. */
const seedTree = (fs: VolumeFs, root: string) =>
  Effect.gen(function*() {
    yield* fs.write(`${root}/lib/cli.js`, "console.log(1)\n")
    yield* fs.symlink("../lib/cli.js", `${root}/bin/tool`)
    yield* fs.write(`${root}/bin/run.sh`, "#!/bin/sh\necho ran\n", { mode: 0o755 })
    yield* fs.mkdir(`${root}/pgdata`)
    yield* fs.chmod(`${root}/pgdata`, 0o700)
    yield* fs.write(`${root}/pgdata/PG_VERSION`, "16\n", { mode: 0o600 })
  })

export const linksTests = ({ options, test }: Context) => {
  describe("symlinks", () => {
    test("symlink stores the target as given and readlink returns it", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.symlink("../lib/cli.js", "/node_modules/.bin/tool")
        assert.strictEqual(yield* fs.readlink("/node_modules/.bin/tool"), "../lib/cli.js")
        const meta = yield* fs.stat("/node_modules/.bin/tool")
        assert.strictEqual(meta.kind, "symlink")
        assert.deepStrictEqual(meta.target, Option.some("../lib/cli.js"))
        assert.strictEqual(meta.size, "../lib/cli.js".length)
        const [entry] = yield* fs.list("/node_modules/.bin")
        assert.strictEqual(entry?.kind, "symlink")
        assert.deepStrictEqual(entry?.target, Option.some("../lib/cli.js"))
        // Other kinds carry no target.
        yield* fs.write("/file", "x")
        assert.isTrue(Option.isNone((yield* fs.stat("/file")).target))
      }))

    test("a link may point anywhere, and reading through it is refused", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.symlink("/etc/passwd", "/abs")
        yield* fs.symlink("../../../outside", "/climb")
        yield* fs.symlink("missing", "/dangling")
        assert.strictEqual(yield* fs.readlink("/abs"), "/etc/passwd")
        assert.strictEqual(yield* fs.readlink("/climb"), "../../../outside")
        assert.strictEqual(yield* fs.readlink("/dangling"), "missing")
        yield* expectFailure("InvalidPath")(fs.read("/abs"))
        yield* expectFailure("InvalidPath")(fs.readToString("/climb"))
        assert.deepStrictEqual(names(yield* fs.list("/")), ["abs", "climb", "dangling"])
      }))

    test("symlink onto an existing path fails with AlreadyExists and changes nothing", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("/file", "keep")
        yield* fs.mkdir("/dir")
        yield* fs.symlink("a", "/link")
        yield* expectFsError("AlreadyExists")(fs.symlink("x", "/file"))
        yield* expectFsError("AlreadyExists")(fs.symlink("x", "/dir"))
        yield* expectFsError("AlreadyExists")(fs.symlink("x", "/link"))
        assert.strictEqual(yield* fs.readToString("/file"), "keep")
        assert.strictEqual((yield* fs.stat("/dir")).kind, "directory")
        assert.strictEqual(yield* fs.readlink("/link"), "a")
      }))

    test("readlink of a missing path is PathNotFound, of a file InvalidData", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* expectFailure("PathNotFound")(fs.readlink("/nope"))
        yield* fs.write("/file", "x")
        yield* expectFsError("InvalidData")(fs.readlink("/file"))
        yield* expectFailure("InvalidPath")(fs.readlink("/"))
      }))

    test("an empty target is refused", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* expectFailure("InvalidPath")(fs.symlink("", "/link"))
        assert.isFalse(yield* fs.exists("/link"))
      }))

    test("remove deletes the link itself, never its target", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("/target.txt", "stay")
        yield* fs.symlink("target.txt", "/link")
        yield* fs.remove("/link")
        assert.isFalse(yield* fs.exists("/link"))
        assert.strictEqual(yield* fs.readToString("/target.txt"), "stay")
      }))

    test("a write onto a link replaces the link with a file", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("/target.txt", "stay")
        yield* fs.symlink("target.txt", "/link")
        yield* fs.write("/link", "new")
        assert.strictEqual((yield* fs.stat("/link")).kind, "file")
        assert.strictEqual(yield* fs.readToString("/link"), "new")
        assert.strictEqual(yield* fs.readToString("/target.txt"), "stay")
      }))
  })

  describe("modes", () => {
    test("write and writeStream set the mode; without one a new file is 0644", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("/bin/run.sh", "#!/bin/sh\necho ran\n", { mode: 0o755 })
        assert.strictEqual((yield* fs.stat("/bin/run.sh")).mode, 0o755)
        yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream("/secret", { mode: 0o600 })
          yield* sink.write("s")
          yield* sink.close()
        }))
        assert.strictEqual((yield* fs.stat("/secret")).mode, 0o600)
        yield* fs.write("/plain", "p")
        assert.strictEqual((yield* fs.stat("/plain")).mode, 0o644)
        // A write publishes a new file: the mode is the one asked for now.
        yield* fs.write("/bin/run.sh", "again")
        assert.strictEqual((yield* fs.stat("/bin/run.sh")).mode, 0o644)
      }))

    test("chmod sets the bits of files, directories and the root", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("/tool.sh", "x")
        yield* fs.chmod("/tool.sh", 0o755)
        assert.strictEqual((yield* fs.stat("/tool.sh")).mode, 0o755)
        yield* fs.mkdir("/pgdata")
        yield* fs.chmod("/pgdata", 0o700)
        assert.strictEqual((yield* fs.stat("/pgdata")).mode, 0o700)
        const [listed] = yield* fs.list("/").pipe(Effect.map((entries) => entries.filter((e) => e.path === "/pgdata")))
        assert.strictEqual(listed?.mode, 0o700)
        yield* fs.chmod("/", 0o750)
        assert.strictEqual((yield* fs.stat("/")).mode, 0o750)
        yield* fs.chmod("/", 0o755)
        yield* fs.chmod("/tool.sh", 0o444)
        assert.isTrue((yield* fs.stat("/tool.sh")).readonly)
      }))

    test("modes outside 0..0o7777 are InvalidConfig and change nothing", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* fs.write("/f", "x")
        for (const bad of [-1, 0o10000, 1.5, Number.NaN]) {
          yield* expectFailure("InvalidConfig")(fs.chmod("/f", bad))
          yield* expectFailure("InvalidConfig")(fs.write("/g", "y", { mode: bad }))
        }
        assert.strictEqual((yield* fs.stat("/f")).mode, 0o644)
        assert.isFalse(yield* fs.exists("/g"))
      }))

    test("chmod of a missing path is PathNotFound; of a symlink it is refused", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* expectFailure("PathNotFound")(fs.chmod("/missing", 0o755))
        yield* fs.write("/target", "x")
        yield* fs.symlink("target", "/link")
        yield* expectFailure("InvalidPath")(fs.chmod("/link", 0o600))
        assert.strictEqual((yield* fs.stat("/target")).mode, 0o644)
      }))
  })

  describe("trees keep links and modes", () => {
    test("copy of a tree keeps links as links and every mode", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* seedTree(fs, "/src")
        yield* fs.copy("/src", "/dst")
        assert.deepStrictEqual(yield* describeTree(fs, "/dst"), yield* describeTree(fs, "/src"))
        assert.include(yield* describeTree(fs, "/dst"), "/bin/tool symlink 777 ../lib/cli.js")
        assert.include(yield* describeTree(fs, "/dst"), "/bin/run.sh file 755 ")
        assert.include(yield* describeTree(fs, "/dst"), "/pgdata directory 700 ")
        // Single entries too.
        yield* fs.copy("/src/bin/tool", "/tool-copy")
        assert.strictEqual(yield* fs.readlink("/tool-copy"), "../lib/cli.js")
        yield* fs.copy("/src/bin/run.sh", "/run-copy.sh")
        assert.strictEqual((yield* fs.stat("/run-copy.sh")).mode, 0o755)
      }))

    test("rename of a tree keeps links as links and every mode", () =>
      Effect.gen(function*() {
        const fs = yield* freshFs()
        yield* seedTree(fs, "/src")
        const before = yield* describeTree(fs, "/src")
        yield* fs.rename("/src", "/moved")
        assert.deepStrictEqual(yield* describeTree(fs, "/moved"), before)
        yield* fs.rename("/moved/bin/tool", "/tool")
        assert.strictEqual(yield* fs.readlink("/tool"), "../lib/cli.js")
      }))

    if (options.supportsPath) {
      test("links and modes are real on the host directory", () =>
        Effect.gen(function*() {
          const vol = yield* createVolume("links-host")
          const fs = vol.fs()
          yield* seedTree(fs, "/t")
          const host = yield* vol.path()
          assert.strictEqual(NodeFs.readlinkSync(NodePath.join(host, "t/bin/tool")), "../lib/cli.js")
          assert.strictEqual(NodeFs.statSync(NodePath.join(host, "t/bin/run.sh")).mode & 0o7777, 0o755)
          assert.strictEqual(NodeFs.statSync(NodePath.join(host, "t/pgdata")).mode & 0o7777, 0o700)
        }))
    }
  })
}
