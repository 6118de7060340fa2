/**
 * The sandbox file server (SPEC §12) end to end: real bubblewrap, FUSE and the evfs server.
 */
import { assert, describe, it } from "@effect/vitest"
import { Effect, Either, Fiber, Logger, Option, Schedule, Schema } from "effect"
import { execFileSync } from "node:child_process"
import { chownSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import * as FileServer from "../../src/internal/namespace/fileServer/fileServer.js"
import * as Mount from "../../src/Mount.js"
import * as Sandbox from "../../src/Sandbox.js"
import * as Volume from "../../src/Volume.js"
import { assertNothingLeft, leftOf, processesMentioning, stagingPrefix, startHolder, tempDir, withHome } from "./support.js"

const OVERLAY = "user.fuseoverlayfs.override_stat"

/** The running file servers (the keeper's script mentions the binary too). */
const servers = (): ReadonlyArray<string> =>
  processesMentioning(FileServer.BINARY).filter((line) => line.split(": ")[1]?.startsWith(FileServer.BINARY))

/** `uid:gid mode` of a host file, as `stat -c '%u:%g %a'` prints it. */
const hostStat = (path: string): string => {
  const st = statSync(path)
  return `${st.uid}:${st.gid} ${(st.mode & 0o7777).toString(8)}`
}

const overlayOf = (path: string): Option.Option<string> => {
  try {
    return Option.some(
      execFileSync("getfattr", ["--only-values", "-n", OVERLAY, path], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
    )
  } catch {
    return Option.none()
  }
}

/** A host directory owned by 1000:1000 holding `f` (1000:1000, 0644). */
const hostTree = (dir: string): string => {
  const host = join(dir, "p")
  mkdirSync(host)
  writeFileSync(join(host, "f"), "data\n", { mode: 0o644 })
  chownSync(host, 1000, 1000)
  chownSync(join(host, "f"), 1000, 1000)
  return host
}

const sh = (sb: Sandbox.Sandbox, script: string) =>
  Effect.map(sb.exec("sh", ["-c", script]), (out) => {
    assert.strictEqual(out.exitCode, 0, out.stderr)
    return out.stdout
  })

/** A ramfs (no user xattrs) mounted on the host for the test's lifetime. */
const ramfs = (dir: string) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const path = join(dir, "ramfs")
      mkdirSync(path)
      execFileSync("mount", ["-t", "ramfs", "ramfs", path])
      writeFileSync(join(path, "f"), "data\n", { mode: 0o644 })
      return path
    }),
    (path) => Effect.sync(() => execFileSync("umount", [path]))
  )

describe("file server: stat virtualization and host permissions", () => {
  it.scopedLive("strict + private: the guest's chown/chmod live in the xattr overlay; the host inode keeps its owner and mode", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const host = hostTree(dir)
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("strict")
            .volume("/work", (m) => m.bind(host).statVirtualization("strict").hostPermissions("private"))
            .create()
          const out = yield* sh(sb, "stat -c '%u:%g %a' /work/f; chown 0:0 /work/f; chmod 700 /work/f; stat -c '%u:%g %a' /work/f")
          assert.strictEqual(out, "1000:1000 644\n0:0 700\n")
          // a file the guest creates is the guest's, and its overlay is not the guest's to touch
          const created = yield* sh(
            sb,
            "echo new > /work/g && stat -c '%u:%g' /work/g; getfattr -d -m - /work/f 2>&1; " +
              `setfattr -n ${OVERLAY} -v 5:5:777 /work/f 2>&1 || echo refused`
          )
          assert.include(created, "0:0\n")
          assert.notInclude(created, "override_stat")
          assert.include(created, "refused")
          assert.strictEqual(yield* sh(sb, "grep ' /work ' /proc/self/mountinfo | grep -c fuse"), "1\n")
        }))
        assert.strictEqual(hostStat(join(host, "f")), "1000:1000 644")
        assert.isTrue(Option.contains(overlayOf(join(host, "f")), "0:0:700"))
        assert.strictEqual(readFileSync(join(host, "g"), "utf8"), "new\n")
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("strict + mirror: the rwx bits also reach the host inode, the owner does not", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const host = hostTree(dir)
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("mirror")
            .volume("/work", (m) => m.bind(host).statVirtualization("strict").hostPermissions("mirror"))
            .create()
          assert.strictEqual(yield* sh(sb, "chown 0:0 /work/f; chmod 750 /work/f; stat -c '%u:%g %a' /work/f"), "0:0 750\n")
        }))
        assert.strictEqual(hostStat(join(host, "f")), "1000:1000 750")
        assert.isTrue(Option.contains(overlayOf(join(host, "f")), "0:0:750"))
      })
    ))

  it.scopedLive("uid/gid: files without an overlay record show the fallback owner", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const host = hostTree(dir)
        writeFileSync(join(host, "root-owned"), "x")
        yield* Volume.builder("workspace").create()
        const sb = yield* Sandbox.builder("owner")
          .volume("/b", (m) => m.bind(host).statVirtualization("relaxed").uid(4242).gid(4343))
          .volume("/w", (m) => m.named("workspace").statVirtualization("strict").hostPermissions("private").uid(1000).gid(1000))
          .create()
        assert.strictEqual(
          yield* sh(sb, "stat -c '%u:%g %a' /b/root-owned /b/f; touch /w/x; chown 7:7 /w/x; stat -c '%u:%g' /w /w/x"),
          "4242:4343 644\n4242:4343 644\n1000:1000\n7:7\n"
        )
        assert.strictEqual(hostStat(join(host, "root-owned")), "0:0 644")
      })
    ))

  it.scopedLive("strict fails closed on a host path without xattrs; relaxed serves it with literal metadata", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const path = yield* ramfs(dir)
        const strict = leftOf(
          yield* Effect.either(Effect.scoped(
            Sandbox.builder("closed").volume("/r", (m) => m.bind(path).statVirtualization("strict")).create()
          ))
        )
        assert.strictEqual(strict._tag, "SandboxError")
        assert.include(strict.message, "does not support extended attributes")
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("tolerant")
            .volume("/r", (m) => m.bind(path).statVirtualization("relaxed").hostPermissions("private"))
            .create()
          assert.strictEqual(yield* sh(sb, "chmod 600 /r/f; stat -c '%a' /r/f"), "600\n")
        }))
        // nothing to keep an overlay in: relaxed fell back to the literal inode
        assert.strictEqual(hostStat(join(path, "f")), "0:0 600")
        yield* assertNothingLeft(join(dir, "home"))
      })
    ))

  it.scopedLive("off + private: literal host metadata, and the guest cannot change the host inode", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const host = hostTree(dir)
        const sb = yield* Sandbox.builder("offpriv")
          .volume("/work", (m) => m.bind(host).statVirtualization("off").hostPermissions("private"))
          .create()
        const out = yield* sb.exec("sh", ["-c", "stat -c '%u:%g %a' /work/f; chmod 700 /work/f || echo refused"])
        assert.strictEqual(out.stdout, "1000:1000 644\nrefused\n")
        assert.include(out.stderr, "Operation not permitted")
        assert.strictEqual(hostStat(join(host, "f")), "1000:1000 644")
      })
    ))

  it.scopedLive("policy table: every valid combination starts, served only when it needs the server", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const host = hostTree(dir)
        const stats = [undefined, "strict", "relaxed", "off"] as const
        const perms = [undefined, "private", "mirror"] as const
        for (const stat of stats) {
          for (const perm of perms) {
            const describe = (m: Mount.MountBuilder) => {
              let b = m.bind(host)
              if (stat !== undefined) b = b.statVirtualization(stat)
              if (perm !== undefined) b = b.hostPermissions(perm)
              return b
            }
            const label = `${stat ?? "unset"} × ${perm ?? "unset"}`
            const built = yield* Effect.either(Mount.build("/p", describe))
            if (stat === "off" && perm === "mirror") {
              assert.isTrue(Either.isLeft(built), `${label} is rejected`)
              continue
            }
            assert.isTrue(Either.isRight(built), `${label} is valid`)
            const served = (stat === "strict" || stat === "relaxed" || perm === "private")
            const fuse = yield* Effect.scoped(Effect.flatMap(
              Sandbox.builder("table").volume("/p", describe).create(),
              (sb) => sh(sb, "grep ' /p ' /proc/self/mountinfo | grep -c fuse || true")
            ))
            assert.strictEqual(fuse, served ? "1\n" : "0\n", label)
          }
        }
        yield* assertNothingLeft(dir)
      })
    ))
})

describe("file server: validation of uid/gid", () => {
  const invalid = (f: (m: Mount.MountBuilder) => Mount.MountBuilder, fragment: string) =>
    Effect.gen(function*() {
      const error = leftOf(yield* Effect.either(Mount.build("/p", f)))
      assert.strictEqual(error._tag, "InvalidConfig")
      assert.include(error.message, fragment)
    })

  it.effect("uid/gid need stat virtualization, a bind or named mount, and a valid id", () =>
    Effect.gen(function*() {
      yield* invalid((m) => m.bind("/h").uid(1000), "need statVirtualization")
      yield* invalid((m) => m.bind("/h").statVirtualization("off").gid(1000), "need statVirtualization")
      yield* invalid((m) => m.tmpfs().uid(1), "does not take uid(1)")
      yield* invalid((m) => m.disk("/h/x.img").gid(1), "does not take gid(1)")
      yield* invalid((m) => m.bind("/h").statVirtualization("strict").uid(-1), "uid(-1)")
      yield* invalid((m) => m.bind("/h").statVirtualization("strict").uid(1.5), "uid(1.5)")
      const ok = yield* Mount.build("/p", (m) => m.named("v").statVirtualization("relaxed").uid(0).gid(7))
      const text = yield* Effect.orDie(Schema.encode(Mount.VolumeMountFromJson)(ok))
      assert.include(text, `"uid":0`)
      assert.deepStrictEqual(yield* Effect.orDie(Schema.decodeUnknown(Mount.VolumeMountFromJson)(text)), ok)
    }))

  it.effect("a named disk volume refuses uid/gid once its kind is known", () =>
    Effect.gen(function*() {
      const mount = yield* Mount.build("/p", (m) => m.named("d").statVirtualization("strict").uid(1))
      const error = leftOf(
        yield* Effect.either(Mount.validateMounts([mount], { resolvedKinds: new Map([["d", "disk" as const]]) }))
      )
      assert.include(error.message, "uid(1)")
    }))
})

describe("file server: hard quota inside the sandbox", () => {
  it.scopedLive("guest writes past a directory volume's quota fail with ENOSPC; the volume stays within it", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("pip-cache").quota(2).create()
        yield* vol.fs().write("/seed", "x".repeat(100_000))
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("quota")
            .volume("/cache", (m) => m.named("pip-cache"))
            .create()
          const dd = yield* sb.exec("sh", ["-c", "dd if=/dev/zero of=/cache/big bs=256k count=100"])
          assert.notStrictEqual(dd.exitCode, 0)
          assert.include(dd.stderr, "No space left on device")
          const df = yield* sh(sb, "df -k /cache | tail -1 | awk '{print $2}'")
          assert.strictEqual(df, "2048\n")
          // freeing space makes room again
          yield* sh(sb, "rm /cache/big && dd if=/dev/zero of=/cache/small bs=64k count=4 status=none")
          const stopped = yield* sb.stop()
          assert.deepStrictEqual(stopped.overQuota, [])
        }))
        const after = yield* Volume.get("pip-cache")
        assert.strictEqual(after.usedBytes, 100_000 + 256 * 1024)
        assert.isAtMost(after.usedBytes, 2 * 1024 * 1024)
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("a read-only mount of a quota'd volume stays a plain bind", () =>
    withHome(() =>
      Effect.gen(function*() {
        yield* Volume.builder("ro").quota(1).create()
        const sb = yield* Sandbox.builder("ro").volume("/ro", (m) => m.named("ro").readonly()).create()
        assert.strictEqual(yield* sh(sb, "grep ' /ro ' /proc/self/mountinfo | grep -c fuse || true"), "0\n")
      })
    ))
})

describe("file server: faults and leaks", () => {
  it.scopedLive("file servers dying mid-run (kill -9): their mounts fail at once, stop cleans up and reports them", () => {
    const warnings: Array<string> = []
    const collect = Logger.make(({ logLevel, message }) => {
      if (logLevel._tag === "Warning") warnings.push(String(message))
    })
    return withHome((dir) =>
      Effect.gen(function*() {
        const host = hostTree(dir)
        yield* Volume.builder("q").quota(8).create()
        const sb = yield* Sandbox.builder("dies")
          .volume("/work", (m) => m.bind(host).statVirtualization("strict"))
          .volume("/q", (m) => m.named("q"))
          .volume("/fine", (m) => m.bind(host).statVirtualization("relaxed"))
          .create()
        yield* sb.mount("/live", (m) => m.named("q").statVirtualization("relaxed"))
        const running = servers()
        assert.strictEqual(running.length, 4, running.join("\n"))
        const victims = running.filter((line) => !line.includes("--stat=relaxed") || line.includes("--quota"))
        assert.strictEqual(victims.length, 3, running.join("\n"))
        for (const line of victims) process.kill(Number(line.split(":")[0]), "SIGKILL")
        for (const path of ["/work/f", "/q", "/live"]) {
          const out = yield* sb.exec("sh", ["-c", `ls ${path}`], { timeout: "20 seconds" })
          assert.notStrictEqual(out.exitCode, 0, path)
          assert.include(out.stderr, "Transport endpoint is not connected")
        }
        assert.strictEqual((yield* sh(sb, "cat /fine/f")), "data\n")
        const stopped = yield* sb.stop()
        assert.deepStrictEqual(
          stopped.fileServerFailures.map((f) => [f.guestPath, Option.getOrNull(f.volume)]).sort(),
          [["/live", "q"], ["/q", "q"], ["/work", null]]
        )
        assert.include(stopped.fileServerFailures[0]!.reason, "ENOTCONN")
        assert.isTrue(warnings.some((w) => w.includes(FileServer.DIED)), JSON.stringify(warnings))
        yield* assertNothingLeft(dir)
      })
    ).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, collect)))
  })

  it.scopedLive("interrupting a start with served mounts at any moment leaves no mount or server", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const host = hostTree(dir)
        yield* Volume.builder("q").quota(8).create()
        for (const delay of [0, 5, 20, 60, 150]) {
          const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
            const sb = yield* Sandbox.builder("interrupted")
              .volume("/a", (m) => m.bind(host).statVirtualization("strict").hostPermissions("private"))
              .volume("/q", (m) => m.named("q"))
              .create()
            yield* sb.mount("/live", (m) => m.bind(host).statVirtualization("relaxed"))
            return yield* Effect.never
          })))
          yield* Effect.sleep(`${delay} millis`)
          yield* Fiber.interrupt(fiber)
          assert.deepStrictEqual(servers(), [], `interrupted after ${delay} ms`)
          yield* assertNothingLeft(dir)
        }
      })
    ))

  it.scopedLive("a failed start (strict without xattrs) leaves no mount or server", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const path = yield* ramfs(dir)
        yield* Effect.either(Effect.scoped(
          Sandbox.builder("closed").volume("/r", (m) => m.bind(path).statVirtualization("strict")).create()
        ))
        assert.deepStrictEqual(servers(), [])
        yield* assertNothingLeft(join(dir, "home"))
      })
    ))

  it.scopedLive("SIGKILL of the owning process ends the sandbox, its FUSE mount and its file server", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const host = join(dir, "p")
      mkdirSync(host)
      const { killed, pid: owner, ready } = yield* startHolder("fileServerHolder.ts", [host])
      assert.include(ready, "ready started")
      assert.strictEqual(servers().length, 2, "the server of the start and the live mount's")
      yield* killed
      yield* Effect.sync(() =>
        processesMentioning(stagingPrefix(owner)).length + processesMentioning("sleep 4545").length +
        servers().length
      ).pipe(Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced("20 millis"), times: 500 }))
      yield* assertNothingLeft(dir, "sleep 4545", owner)
      assert.deepStrictEqual(servers(), [])
      assert.isTrue(existsSync(join(host, "alive")))
      assert.isTrue(existsSync(join(host, "live", "f")))
      assert.isTrue(Option.contains(overlayOf(join(host, "alive")), "0:0:644"))
    }))
})
