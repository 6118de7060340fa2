/**
 * SPEC §11 for `Archive`: export → import keeps links as links and every mode, the
 * volume root's included; tar features real archives use (a hard link to a symlink) import
 * as what they are; import errors name the archive entry.
 */
import { assert, describe } from "@effect/vitest"
import { Chunk, Effect, Option, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as TarStream from "tar-stream"
import * as Archive from "../../src/Archive.js"
import { TEMP_PREFIX } from "../../src/internal/paths.js"
import * as Volume from "../../src/Volume.js"
import type { Context } from "./support.js"
import { createVolume, expectFailure } from "./support.js"

type PackEntry = Partial<TarStream.Header> & { readonly name: string; readonly content?: string }

/** A tar archive of `entries`, built with `tar-stream` as other tools would write it. */
const tarOf = (entries: ReadonlyArray<PackEntry>): Stream.Stream<Uint8Array> =>
  Stream.unwrap(Effect.promise(async () => {
    const pack = TarStream.pack()
    for (const { content, ...header } of entries) {
      if (content === undefined) pack.entry(header)
      else pack.entry(header, content)
    }
    pack.finalize()
    const chunks: Array<Uint8Array> = []
    for await (const chunk of pack as AsyncIterable<Uint8Array>) chunks.push(chunk)
    return Stream.make(Buffer.concat(chunks))
  }))

export const archiveTreesTests = ({ options, test }: Context) => {
  describe("archive trees", () => {
    test("export → import keeps links, modes and the root's mode and mtime", () =>
      Effect.gen(function*() {
        const source = yield* createVolume("tree-src")
        const fs = source.fs()
        yield* fs.write("/lib/cli.js", "console.log(1)\n")
        yield* fs.symlink("../lib/cli.js", "/bin/tool")
        yield* fs.write("/bin/run.sh", "#!/bin/sh\necho ran\n", { mode: 0o755 })
        yield* fs.mkdir("/pgdata")
        yield* fs.write("/pgdata/PG_VERSION", "16\n", { mode: 0o600 })
        yield* fs.chmod("/pgdata", 0o700)
        yield* fs.chmod("/", 0o750)
        const sourceRoot = yield* fs.stat("/")
        const tar = Chunk.toArray(yield* Stream.runCollect(Archive.exportTar(source)))

        yield* Archive.importTar("tree-dst", Stream.fromIterable(tar), { create: true })
        const dst = (yield* Volume.get("tree-dst")).fs()
        assert.strictEqual(yield* dst.readlink("/bin/tool"), "../lib/cli.js")
        assert.strictEqual((yield* dst.stat("/bin/run.sh")).mode, 0o755)
        assert.strictEqual((yield* dst.stat("/pgdata")).mode, 0o700)
        assert.strictEqual((yield* dst.stat("/pgdata/PG_VERSION")).mode, 0o600)
        assert.strictEqual(yield* dst.readToString("/bin/run.sh"), "#!/bin/sh\necho ran\n")
        assert.strictEqual((yield* dst.stat("/")).mode, 0o750, "the root's mode")
        if (options.supportsPath) {
          const seconds = (meta: typeof sourceRoot) =>
            Option.map(meta.modified, (t) => Math.floor(t.epochMillis / 1000))
          assert.deepStrictEqual(seconds(yield* dst.stat("/")), seconds(sourceRoot), "the root's mtime")
        }
      }))

    test("a hard link to a symlink imports as that link", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("hardlinks")
        yield* Archive.importTar("hardlinks", tarOf([
          { name: "lib/cli.js", type: "file", mode: 0o644, content: "x" },
          { name: "bin/tool", type: "symlink", linkname: "../lib/cli.js" },
          { name: "bin/tool2", type: "link", linkname: "bin/tool" },
          { name: "bin/cli-copy", type: "link", linkname: "lib/cli.js" }
        ]))
        const fs = vol.fs()
        assert.strictEqual(yield* fs.readlink("/bin/tool2"), "../lib/cli.js")
        assert.strictEqual((yield* fs.stat("/bin/tool2")).kind, "symlink")
        assert.strictEqual(yield* fs.readToString("/bin/cli-copy"), "x")
      }))

    test("import errors name the archive entry, never the staging directory", () =>
      Effect.gen(function*() {
        const vol = yield* createVolume("bad-import")
        const error = yield* expectFailure("VolumeFsError")(Archive.importTar("bad-import", tarOf([
          { name: "a", type: "file", content: "file" },
          { name: "a/b", type: "file", content: "below a file" }
        ])))
        assert.notInclude(error.path, TEMP_PREFIX)
        assert.strictEqual(error.path, "/a/b")
        assert.notInclude(error.message, TEMP_PREFIX)
        assert.deepStrictEqual(yield* vol.fs().list("/"), [], "nothing was imported")
      }))

    if (options.supportsPath) {
      test("imported links are real links on the host", () =>
        Effect.gen(function*() {
          const vol = yield* createVolume("host-links")
          yield* Archive.importTar("host-links", tarOf([{ name: "l", type: "symlink", linkname: "/etc/passwd" }]))
          assert.strictEqual(NodeFs.readlinkSync(`${yield* vol.path()}/l`), "/etc/passwd")
        }))
    }
  })
}
