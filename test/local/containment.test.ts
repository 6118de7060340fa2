/**
 * The attacker's view of the directory driver (SPEC §3): a sandbox plants absolute,
 * relative and dangling symlinks, symlinked intermediate directories, and keeps swapping
 * a real directory for a symlink to the outside while the host works on the volume.
 * Nothing outside the volume may be read, created, modified or deleted.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Worker } from "node:worker_threads"
import type { VolumeFs } from "../../src/VolumeFs.js"
import { expectFailure } from "../conformance/support.js"
import { makeVolumeDir, snapshot } from "./fixtures/volumeDir.js"
import type { VolumeDir } from "./fixtures/volumeDir.js"

const SECRET = "TOP-SECRET host data"
const decoder = new TextDecoder()

/** The outside world as the test sees it: the volume's siblings, and a few files of /etc. */
const outsideState = (dir: VolumeDir) => {
  const siblings = NodeFs.readdirSync(dir.base).sort()
  return {
    siblings,
    outside: snapshot(dir.outside),
    etcPasswd: NodeFs.statSync("/etc/passwd").mtimeMs,
    etcHostname: NodeFs.existsSync("/etc/hostname"),
    etcPwned: NodeFs.readdirSync("/etc").filter((name) => name.includes("pwned"))
  }
}

/** Plants the attacker's symlinks; returns the untouched-outside check. */
const plant = (dir: VolumeDir) => {
  NodeFs.writeFileSync(NodePath.join(dir.outside, "secret.txt"), SECRET)
  NodeFs.mkdirSync(NodePath.join(dir.outside, "sub"))
  NodeFs.writeFileSync(NodePath.join(dir.outside, "sub", "secret.txt"), SECRET)
  NodeFs.writeFileSync(dir.host("real.txt"), "inside")
  NodeFs.mkdirSync(dir.host("deep", "er"), { recursive: true })
  NodeFs.symlinkSync(dir.outside, dir.host("abs"))
  NodeFs.symlinkSync("../outside", dir.host("rel"))
  NodeFs.symlinkSync("../../../outside", dir.host("deep", "er", "rel"))
  NodeFs.symlinkSync("/etc", dir.host("etc"))
  NodeFs.symlinkSync(NodePath.join(dir.outside, "created.txt"), dir.host("dangling"))
  NodeFs.symlinkSync(NodePath.join(dir.outside, "secret.txt"), dir.host("file-link"))
  NodeFs.symlinkSync("../outside/secret.txt", dir.host("rel-file-link"))
  const before = outsideState(dir)
  return () => assert.deepStrictEqual(outsideState(dir), before, "nothing outside the volume changed")
}

/** No regular file in the volume holds the secret (nothing was copied or moved in). */
const assertSecretNotInside = (dir: VolumeDir) => {
  const visit = (path: string) => {
    const stat = NodeFs.lstatSync(path)
    if (stat.isDirectory()) for (const name of NodeFs.readdirSync(path)) visit(NodePath.join(path, name))
    else if (stat.isFile()) assert.notInclude(NodeFs.readFileSync(path, "utf8"), SECRET, `${path} holds the secret`)
  }
  visit(dir.root)
}

const readAll = (fs: VolumeFs, path: string) =>
  Effect.flatMap(Stream.runCollect(fs.readStream(path, { chunkSize: 7 })), (chunks) =>
    Effect.sync(() => decoder.decode(Buffer.concat(Array.from(chunks)))))

describe("containment against planted symlinks", () => {
  it.scoped("reads, lists and stats through planted symlinks are refused", () =>
    Effect.gen(function*() {
      const dir = yield* makeVolumeDir
      const untouched = plant(dir)
      const { fs } = dir
      for (const through of ["abs", "rel", "deep/er/rel", "etc"]) {
        const file = through === "etc" ? "etc/passwd" : `${through}/secret.txt`
        yield* fs.read(file).pipe(expectFailure("InvalidPath"))
        yield* readAll(fs, file).pipe(expectFailure("InvalidPath"))
        yield* fs.stat(file).pipe(expectFailure("InvalidPath"))
        yield* fs.list(through).pipe(expectFailure("InvalidPath"))
        yield* fs.list(`${through}/sub`).pipe(expectFailure("InvalidPath"))
        yield* fs.copy(file, "stolen").pipe(expectFailure("InvalidPath"))
        yield* fs.rename(file, "stolen").pipe(expectFailure("InvalidPath"))
      }
      for (const leaf of ["file-link", "rel-file-link", "dangling", "abs"]) {
        yield* fs.read(leaf).pipe(expectFailure("InvalidPath"))
        yield* readAll(fs, leaf).pipe(expectFailure("InvalidPath"))
        assert.strictEqual((yield* fs.stat(leaf)).kind, "symlink")
      }
      const error = yield* fs.read("deep/er/rel/secret.txt").pipe(expectFailure("InvalidPath"))
      assert.include(error.reason, "symlink")
      assert.isFalse(NodeFs.existsSync(dir.host("stolen")))
      untouched()
    }))

  it.scoped("writes, mkdir, copy, rename and removal through planted symlinks change nothing outside", () =>
    Effect.gen(function*() {
      const dir = yield* makeVolumeDir
      const untouched = plant(dir)
      const { fs } = dir
      for (const through of ["abs", "rel", "deep/er/rel", "etc"]) {
        yield* fs.write(`${through}/secret.txt`, "pwned").pipe(expectFailure("InvalidPath"))
        yield* fs.write(`${through}/pwned.txt`, "pwned").pipe(expectFailure("InvalidPath"))
        yield* fs.write(`${through}/new/pwned.txt`, "pwned").pipe(expectFailure("InvalidPath"))
        yield* fs.mkdir(`${through}/pwned-dir`).pipe(expectFailure("InvalidPath"))
        yield* fs.remove(`${through}/secret.txt`).pipe(expectFailure("InvalidPath"))
        yield* fs.remove(`${through}/hostname`).pipe(expectFailure("InvalidPath"))
        yield* fs.removeDir(`${through}/sub`).pipe(expectFailure("InvalidPath"))
        yield* fs.copy("real.txt", `${through}/pwned.txt`).pipe(expectFailure("InvalidPath"))
        yield* fs.rename("real.txt", `${through}/pwned.txt`).pipe(expectFailure("InvalidPath"))
        yield* Effect.scoped(Effect.gen(function*() {
          const sink = yield* fs.writeStream(`${through}/pwned.txt`)
          yield* sink.write("pwned")
          yield* sink.close()
        })).pipe(expectFailure("InvalidPath"))
      }
      // Directory operations on a symlink never reach what it points to.
      yield* Effect.either(fs.removeDir("abs"))
      yield* Effect.either(fs.removeDir("etc"))
      // A leaf symlink is replaced by a write, never written through.
      yield* fs.write("dangling", "replaced the link")
      yield* fs.write("file-link", "replaced the link")
      yield* Effect.scoped(Effect.gen(function*() {
        const sink = yield* fs.writeStream("rel-file-link")
        yield* sink.write("replaced the link")
        yield* sink.close()
      }))
      for (const leaf of ["dangling", "file-link", "rel-file-link"]) {
        assert.isTrue(NodeFs.lstatSync(dir.host(leaf)).isFile())
        assert.strictEqual(yield* fs.readToString(leaf), "replaced the link")
      }
      // Copying a tree that holds symlinks copies the links, never what they point to.
      yield* fs.copy("deep", "deep-copy")
      assert.strictEqual(NodeFs.readlinkSync(dir.host("deep-copy", "er", "rel")), "../../../outside")
      yield* fs.read("deep-copy/er/rel/secret.txt").pipe(expectFailure("InvalidPath"))
      yield* fs.copy("abs", "abs-copy")
      assert.isTrue(NodeFs.lstatSync(dir.host("abs-copy")).isSymbolicLink())
      // Renaming and removing a link moves or removes the link itself.
      yield* fs.rename("rel", "moved/rel")
      yield* fs.list("moved/rel").pipe(expectFailure("InvalidPath"))
      yield* fs.remove("etc")
      yield* fs.remove("abs")
      assert.isFalse(NodeFs.existsSync(dir.host("abs")))
      untouched()
      assertSecretNotInside(dir)
    }))

  it.scoped("a symlink swapped in and out concurrently never lets an operation escape", () =>
    Effect.gen(function*() {
      const dir = yield* makeVolumeDir
      const untouched = plant(dir)
      const { fs } = dir
      const swapper = yield* startSwapper(dir)
      const outcomes = new Map<string, number>()
      /** Runs one operation; a success must not have read the secret. */
      const attempt = <A>(label: string, operation: Effect.Effect<A, { readonly _tag: string }>) =>
        Effect.map(Effect.either(operation), (result) => {
          const key = `${label}:${Either.isRight(result) ? "ok" : result.left._tag}`
          outcomes.set(key, (outcomes.get(key) ?? 0) + 1)
          if (Either.isRight(result)) {
            const value: unknown = result.right
            const text = value instanceof Uint8Array ? decoder.decode(value) : typeof value === "string" ? value : ""
            assert.notInclude(text, SECRET, `${label} returned the secret`)
            if (Array.isArray(value)) {
              for (const entry of value as ReadonlyArray<{ readonly path: string }>) {
                assert.notInclude(entry.path, "secret", `${label} listed the outside directory`)
              }
            }
          }
        })
      for (let i = 0; i < 150; i++) {
        for (const swap of ["swap", "deep/swap"]) {
          const n = `${i}-${swap.replace("/", "-")}`
          yield* attempt("read", fs.read(`${swap}/secret.txt`))
          yield* attempt("readStream", readAll(fs, `${swap}/secret.txt`))
          yield* attempt("readLeaf", fs.read("leaf"))
          yield* attempt("readStreamLeaf", readAll(fs, "leaf"))
          yield* attempt("list", fs.list(swap))
          yield* attempt("listSub", fs.list(`${swap}/sub`))
          yield* attempt("stat", fs.stat(`${swap}/secret.txt`))
          yield* attempt("write", fs.write(`${swap}/pwned-${i}.txt`, "pwned"))
          yield* attempt("overwrite", fs.write(`${swap}/inside.txt`, "overwritten"))
          yield* attempt("writeLeaf", fs.write("leaf", "written by the host"))
          yield* attempt("mkdir", fs.mkdir(`${swap}/pwned-dir-${i}`))
          yield* attempt("copyIn", fs.copy("real.txt", `${swap}/copied.txt`))
          yield* attempt("copyOut", fs.copy(`${swap}/secret.txt`, `stolen/${n}.txt`))
          yield* attempt("copyTree", fs.copy(swap, `stolen/tree-${n}`))
          yield* attempt("copyLeaf", fs.copy("leaf", `stolen/leaf-${n}`))
          yield* attempt("renameOut", fs.rename(`${swap}/secret.txt`, `stolen/moved-${n}.txt`))
          yield* attempt("renameIn", fs.rename("real.txt", `${swap}/real.txt`))
          yield* attempt("restore", fs.write("real.txt", "inside"))
          yield* attempt("remove", fs.remove(`${swap}/secret.txt`))
          yield* attempt("removeSub", fs.removeDir(`${swap}/sub`))
          yield* attempt("removeDir", fs.removeDir(swap))
          yield* attempt("measure", dir.driver.measure([swap]))
        }
      }
      const swaps = yield* swapper.stop
      assert.isAbove(swaps, 100, "the swapper kept swapping")
      // Both states were met: the race was really exercised.
      assert.isAbove(outcomes.get("list:ok") ?? 0, 0, "some listings found the real directory")
      assert.isAbove(outcomes.get("list:InvalidPath") ?? 0, 0, "some listings met the symlink")
      for (const label of ["read", "readStream", "stat", "copyOut", "renameOut"]) {
        assert.strictEqual(outcomes.get(`${label}:ok`) ?? 0, 0, `${label} of the outside secret never succeeds`)
      }
      untouched()
      assertSecretNotInside(dir)
    }))
})

/**
 * A worker thread that keeps swapping, at `swap` and `deep/swap`, a real directory for a
 * symlink to the outside directory, and at `leaf` a regular file for a symlink to the
 * outside secret, until stopped. Returns the number of rounds it did.
 */
const startSwapper = (dir: VolumeDir) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const stop = new Int32Array(new SharedArrayBuffer(4))
      const worker = new Worker(SWAPPER, {
        eval: true,
        workerData: { root: dir.root, outside: dir.outside, stop }
      })
      const done = new Promise<number>((resolve, reject) => {
        worker.once("message", resolve)
        worker.once("error", reject)
      })
      return { stop, done, worker }
    }),
    ({ stop, worker }) =>
      Effect.promise(() => {
        Atomics.store(stop, 0, 1)
        return worker.terminate()
      })
  ).pipe(
    Effect.map(({ done, stop }) => ({
      stop: Effect.promise(() => {
        Atomics.store(stop, 0, 1)
        return done
      })
    }))
  )

const SWAPPER = `
const { workerData, parentPort } = require("node:worker_threads")
const fs = require("node:fs")
const path = require("node:path")
const { root, outside, stop } = workerData
const quietly = (f) => { try { f() } catch {} }
let rounds = 0
// Takes down what is at \`at\` (our directory goes back to \`real\`, a link is removed, anything
// the host created there is moved aside), then puts up a real directory or a symlink.
const place = (at, linkTarget, asLink) => {
  const real = at + "-real"
  try { fs.unlinkSync(at) } catch (e) {
    if (e.code === "EISDIR" || e.code === "EPERM") {
      try { fs.renameSync(at, real) } catch { quietly(() => fs.renameSync(at, at + "-junk-" + rounds)) }
    }
  }
  if (asLink) return quietly(() => fs.symlinkSync(linkTarget, at))
  quietly(() => fs.mkdirSync(real))
  quietly(() => fs.writeFileSync(path.join(real, "inside.txt"), "inside"))
  quietly(() => fs.renameSync(real, at))
}
while (Atomics.load(stop, 0) === 0) {
  const asLink = rounds % 2 === 1
  place(path.join(root, "swap"), outside, asLink)
  quietly(() => fs.mkdirSync(path.join(root, "deep"), { recursive: true }))
  place(path.join(root, "deep", "swap"), "../../outside", asLink)
  quietly(() => fs.symlinkSync(path.join(outside, "secret.txt"), path.join(root, "leaf-link")))
  quietly(() => fs.renameSync(path.join(root, "leaf-link"), path.join(root, "leaf")))
  quietly(() => fs.writeFileSync(path.join(root, "leaf-file"), "inside"))
  quietly(() => fs.renameSync(path.join(root, "leaf-file"), path.join(root, "leaf")))
  rounds++
}
parentPort.postMessage(rounds)
`
