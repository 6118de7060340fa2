/**
 * `sb.mount` / `sb.unmount` (SPEC §12): mounts added to a running sandbox, seen by its
 * running processes, scoped, with attachment records and the disk single-writer rule.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import { execFileSync } from "node:child_process"
import { mkdirSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as Sandbox from "../../src/Sandbox.js"
import * as Size from "../../src/Size.js"
import * as Volume from "../../src/Volume.js"
import { assertNothingLeft, leftOf, withHome } from "./support.js"

const sh = (sb: Sandbox.Sandbox, script: string) => Effect.map(sb.exec("sh", ["-c", script]), (out) => out.stdout)

describe("live mounts", () => {
  it.scopedLive("a running process sees a mount added and removed; served and plain kinds; scoped", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("datasets").create()
        yield* vol.fs().write("/d.csv", "a,b\n")
        const host = join(dir, "h")
        mkdirSync(host)
        writeFileSync(join(host, "f"), "host\n")
        const sb = yield* Sandbox.builder("live").create()
        // a process that started before the mount
        yield* sb.exec("sh", ["-c", "(while [ ! -e /data/d.csv ]; do sleep 0.05; done; cat /data/d.csv > /tmp/seen) >/dev/null 2>&1 &"])
        yield* sb.mount("/data", (m) => m.named("datasets").readonly())
        yield* sb.exec("sh", ["-c", "for i in $(seq 100); do [ -e /tmp/seen ] && break; sleep 0.05; done"])
        assert.strictEqual(yield* sh(sb, "cat /tmp/seen"), "a,b\n")
        assert.strictEqual(yield* sh(sb, "echo x > /data/y 2>/dev/null || echo ro"), "ro\n")
        // removing a volume that is mounted live is refused
        const inUse = leftOf(yield* Effect.either(Volume.remove("datasets")))
        assert.strictEqual(inUse._tag, "VolumeInUse")
        yield* sb.unmount("/data")
        assert.strictEqual(yield* sh(sb, "ls /data 2>/dev/null | wc -l"), "0\n")
        // a served live mount, scoped
        yield* Effect.scoped(Effect.gen(function*() {
          yield* sb.mount("/srv/h", (m) => m.bind(host).statVirtualization("strict").hostPermissions("private"))
          assert.strictEqual(yield* sh(sb, "chmod 600 /srv/h/f && stat -c %a /srv/h/f && cat /srv/h/f"), "600\nhost\n")
        }))
        assert.strictEqual(yield* sh(sb, "cat /srv/h/f 2>/dev/null || echo gone"), "gone\n")
        assert.strictEqual(execFileSync("stat", ["-c", "%a", join(host, "f")], { encoding: "utf8" }), "644\n")
        yield* Volume.remove("datasets")
        yield* sb.stop()
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("the rules of create apply at that moment: guest path taken, a second disk writer, unknown unmount", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        yield* Volume.builder("disk").disk().size(Size.mib(64)).create()
        const a = yield* Sandbox.builder("a").volume("/t", (m) => m.tmpfs()).create()
        const b = yield* Sandbox.builder("b").create()
        const taken = leftOf(yield* Effect.either(a.mount("/t", (m) => m.tmpfs())))
        assert.strictEqual(taken._tag, "InvalidConfig")
        yield* a.mount("/disk", (m) => m.named("disk"))
        assert.strictEqual(yield* sh(a, "echo one > /disk/f && cat /disk/f"), "one\n")
        const second = leftOf(yield* Effect.either(b.mount("/disk", (m) => m.named("disk"))))
        assert.strictEqual(second._tag, "VolumeInUse")
        assert.strictEqual((leftOf(yield* Effect.either(a.unmount("/t"))))._tag, "InvalidConfig")
        assert.strictEqual((leftOf(yield* Effect.either(a.unmount("/nothing"))))._tag, "InvalidConfig")
        yield* a.unmount("/disk")
        yield* b.mount("/disk", (m) => m.named("disk"))
        assert.strictEqual(yield* sh(b, "cat /disk/f"), "one\n")
        yield* a.stop()
        yield* b.stop()
        assert.strictEqual(yield* (yield* Volume.get("disk")).fs().readToString("/f"), "one\n")
        yield* assertNothingLeft(dir)
      })
    ))
})
