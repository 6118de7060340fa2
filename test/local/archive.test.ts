/**
 * Tar import into local volumes (issue 16 item 1): metadata is applied through the
 * descriptor walk (a staged directory swapped for a symlink is refused, never followed),
 * archives cannot plant set-user-ID/set-group-ID/sticky files unless asked to, and the
 * volume is held while importing.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Option, Stream } from "effect"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import * as Archive from "../../src/Archive.js"
import { LocalAttachments } from "../../src/internal/local/attachments.js"
import * as HostEntries from "../../src/internal/local/hostEntries.js"
import * as Tar from "../../src/internal/archive/tarEncode.js"
import * as Volume from "../../src/Volume.js"
import { expectFailure } from "../conformance/support.js"
import { makeHome, withHome } from "./fixtures/home.js"
import { makeVolumeDir } from "./fixtures/volumeDir.js"

/** A tar of one directory and one file with the given modes. */
const tarWithModes = (dirMode: number, fileMode: number): Uint8Array => {
  const data = new TextEncoder().encode("#!/bin/sh\n")
  return Buffer.concat([
    Tar.encodeHeader({ name: "bin/", type: "directory", size: 0, mode: dirMode, uid: 0, gid: 0, mtime: 0 }),
    Tar.encodeHeader({ name: "bin/tool", type: "file", size: data.length, mode: fileMode, uid: 0, gid: 0, mtime: 0 }),
    data,
    Tar.padding(data.length),
    Tar.trailer()
  ])
}

const modeOf = (path: string) => NodeFs.statSync(path).mode & 0o7777

describe("Archive import on the local backend", () => {
  it.scoped("set-user-ID, set-group-ID and sticky bits are dropped unless keepSpecialModes is set", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* Archive.importTar("plain", Stream.make(tarWithModes(0o1777, 0o6755)), { create: true })
        const plain = yield* (yield* Volume.get("plain")).path()
        assert.strictEqual(modeOf(NodePath.join(plain, "bin")), 0o777)
        assert.strictEqual(modeOf(NodePath.join(plain, "bin", "tool")), 0o755)
        yield* Archive.importTar("kept", Stream.make(tarWithModes(0o1777, 0o6755)), { create: true, keepSpecialModes: true })
        const kept = yield* (yield* Volume.get("kept")).path()
        assert.strictEqual(modeOf(NodePath.join(kept, "bin")), 0o1777)
        assert.strictEqual(modeOf(NodePath.join(kept, "bin", "tool")), 0o6755)
      }).pipe(withHome(home))
    }))

  it.scoped("an import is refused while a sandbox holds the volume, and holds it while it runs", () =>
    Effect.gen(function*() {
      const home = yield* makeHome
      yield* Effect.gen(function*() {
        yield* Volume.builder("busy").create()
        const attachments = Option.getOrThrow(yield* Effect.serviceOption(LocalAttachments))
        yield* Effect.scoped(Effect.gen(function*() {
          yield* attachments.acquire("busy", { holder: "sandbox api", mode: "rw" })
          yield* Archive.importTar("busy", Stream.make(tarWithModes(0o755, 0o644))).pipe(expectFailure("VolumeInUse"))
        }))
        // While the input is still arriving, the import is recorded as a holder.
        const seen = yield* Archive.importTar(
          "busy",
          Stream.fromEffect(attachments.holders("busy")).pipe(
            Stream.flatMap((holders) => {
              assert.deepStrictEqual(holders, ["archive import"])
              return Stream.make(tarWithModes(0o755, 0o644))
            })
          )
        )
        assert.strictEqual(seen.entries, 2)
        assert.deepStrictEqual(yield* attachments.holders("busy"), [])
      }).pipe(withHome(home))
    }))

  it.scoped("modes are applied through the descriptor walk: a staged directory swapped for a symlink is refused", () =>
    Effect.gen(function*() {
      const dir = yield* makeVolumeDir
      const victim = NodePath.join(dir.outside, "tool")
      NodeFs.writeFileSync(victim, "outside")
      NodeFs.chmodSync(victim, 0o644)
      NodeFs.mkdirSync(dir.host("stage"))
      NodeFs.writeFileSync(dir.host("stage", "tool"), "inside")
      // The sandbox's move: the staging directory becomes a link to the outside.
      NodeFs.renameSync(dir.host("stage"), dir.host("stage-away"))
      NodeFs.symlinkSync(dir.outside, dir.host("stage"))
      yield* HostEntries.setMetadata(dir.root, ["stage", "tool"], { mode: 0o4777, mtime: new Date(0) }).pipe(
        expectFailure("InvalidPath")
      )
      yield* HostEntries.writeSymlink(dir.root, ["stage", "planted"], "/etc/passwd").pipe(expectFailure("InvalidPath"))
      assert.strictEqual(modeOf(victim), 0o644, "the outside file kept its mode")
      assert.deepStrictEqual(NodeFs.readdirSync(dir.outside).sort(), ["tool"])
    }))
})
