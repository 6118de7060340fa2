/**
 * The namespace runtime end to end: real namespaces, loop devices and mount flags (as root).
 */
import { assert, describe, it } from "@effect/vitest"
import { Deferred, Effect, Either, Exit, Fiber, Option, Schedule, Stream } from "effect"
import { execFileSync } from "node:child_process"
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs"
import { dirname, join } from "node:path"
import * as Sandbox from "../../src/Sandbox.js"
import * as Size from "../../src/Size.js"
import * as Volume from "../../src/Volume.js"
import { assertNothingLeft, processesMentioning, stagingPrefix, startHolder, tempDir, withHome, writeScript } from "./support.js"

const leftOf = <A, E>(either: Either.Either<A, E>): E => {
  if (Either.isRight(either)) assert.fail(`expected a failure, got ${JSON.stringify(either.right)}`)
  return (either as Either.Left<E, A>).left
}

const hasQsd = (() => {
  try {
    execFileSync("qemu-storage-daemon", ["--version"], { stdio: "ignore" })
    return existsSync("/dev/fuse")
  } catch {
    return false
  }
})()

describe("NamespaceRuntime", () => {
  it.scopedLive("runs the typical flow: a named volume written on the host, read and written inside", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("pip-cache").create()
        yield* vol.fs().write("/note.txt", "shared cache")
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("api")
            .image("host")
            .volume("/root/.cache/pip", (m) => m.named("pip-cache"))
            .volume("/scratch", (m) => m.tmpfs().size(64))
            .volume("/var/lib/docker", (m) =>
              m.namedWith("docker-data", (n) => n.ensureExists().disk().size(Size.gib(1))))
            .create()
          const out = yield* sb.exec("sh", [
            "-c",
            "cat /root/.cache/pip/note.txt && echo done > /root/.cache/pip/out.txt"
          ])
          assert.strictEqual(out.exitCode, 0, out.stderr)
          assert.strictEqual(out.stdout, "shared cache")
          const docker = yield* sb.exec("sh", ["-c", "echo layer > /var/lib/docker/l && grep -c ' /var/lib/docker ' /proc/self/mountinfo"])
          assert.strictEqual(docker.stdout, "1\n", docker.stderr)
        }))
        assert.strictEqual(yield* vol.fs().readToString("/out.txt"), "done\n")
        const docker = yield* Volume.get("docker-data")
        assert.strictEqual(docker.kind, "disk")
        assert.strictEqual(yield* docker.fs().readToString("/l"), "layer\n")
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("isolates: own PID, network and UTS namespaces, read-only root, no capabilities", () =>
    withHome((dir) =>
      Effect.scoped(Effect.gen(function*() {
        const sb = yield* Sandbox.builder("iso").env("GREETING", "hi").workdir("/work").create()
        const out = yield* sb.exec("sh", [
          "-c",
          "echo $GREETING; pwd; hostname; ls /proc | grep -c '^[0-9]'; tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' ';" +
          " grep CapEff /proc/self/status; touch /etc/x 2>&1; touch /newfile 2>&1; mount -t tmpfs t /tmp 2>&1; true"
        ])
        const lines = out.stdout.split("\n")
        assert.strictEqual(lines[0], "hi")
        assert.strictEqual(lines[1], "/work")
        assert.strictEqual(lines[2], "iso")
        assert.isBelow(Number(lines[3]), 10, "only the sandbox's processes are visible")
        assert.strictEqual(lines[4], "lo")
        assert.strictEqual(lines[5], "CapEff:\t0000000000000000")
        assert.match(out.stdout, /\/etc\/x.*Read-only file system/)
        assert.match(out.stdout, /\/newfile.*Read-only file system/)
        assert.match(out.stdout, /mount: .*(permission denied|must be superuser)/i)
        // Files in /tmp persist between commands of one sandbox.
        yield* sb.exec("sh", ["-c", "echo kept > /tmp/k"])
        assert.strictEqual((yield* sb.exec("cat", ["/tmp/k"])).stdout, "kept\n")
        assert.strictEqual((yield* sb.exec("cat", [], { stdin: "in" })).stdout, "in")
        assert.strictEqual((yield* sb.exec("pwd", [], { cwd: "/tmp" })).stdout, "/tmp\n")
        assert.strictEqual((yield* sb.exec("sh", ["-c", "exit 7"])).exitCode, 7)
        assert.strictEqual((yield* sb.exec("sh", ["-c", "echo $A"], { env: { A: "b" } })).stdout, "b\n")
      })).pipe(Effect.zipRight(assertNothingLeft(dir)))
    ))

  it.scopedLive("a read-only mount fails writes with EROFS and leaves the host file untouched", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const host = join(dir, "ro")
        mkdirSync(host)
        writeFileSync(join(host, "f.txt"), "original")
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("ro").volume("/ro", (m) => m.bind(host).readonly()).create()
          const out = yield* sb.exec("sh", ["-c", "echo changed > /ro/f.txt"])
          assert.notStrictEqual(out.exitCode, 0)
          assert.include(out.stderr, "Read-only file system")
          const remount = yield* sb.exec("mount", ["-o", "remount,rw", "/ro"])
          assert.notStrictEqual(remount.exitCode, 0, "the flag cannot be undone inside")
          assert.strictEqual((yield* sb.exec("cat", ["/ro/f.txt"])).stdout, "original")
        }))
        assert.strictEqual(readFileSync(join(host, "f.txt"), "utf8"), "original")
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("noexec: a script on the mount cannot be executed directly, `sh script` works", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const host = join(dir, "bin")
        mkdirSync(host)
        writeScript(join(host, "s.sh"), "#!/bin/sh\necho ran\n")
        const sb = yield* Sandbox.builder("noexec").volume("/vol", (m) => m.bind(host).noexec()).create()
        const direct = yield* sb.exec("/vol/s.sh")
        assert.notStrictEqual(direct.exitCode, 0)
        assert.include(direct.stderr, "Permission denied")
        const viaShell = yield* sb.exec("sh", ["/vol/s.sh"])
        assert.strictEqual(viaShell.exitCode, 0)
        assert.strictEqual(viaShell.stdout, "ran\n")
        const remount = yield* sb.exec("mount", ["-o", "remount,bind,exec", "/vol"])
        assert.notStrictEqual(remount.exitCode, 0)
        assert.include((yield* sb.exec("/vol/s.sh")).stderr, "Permission denied")
      })
    ))

  it.scopedLive("tmpfs of 4 MiB: 1 MiB fits, 8 MiB fails with ENOSPC", () =>
    withHome(() =>
      Effect.gen(function*() {
        const sb = yield* Sandbox.builder("tmp").volume("/scratch", (m) => m.tmpfs().size(4)).create()
        const small = yield* sb.exec("dd", ["if=/dev/zero", "of=/scratch/small", "bs=1M", "count=1"])
        assert.strictEqual(small.exitCode, 0, small.stderr)
        const big = yield* sb.exec("dd", ["if=/dev/zero", "of=/scratch/big", "bs=1M", "count=8"])
        assert.notStrictEqual(big.exitCode, 0)
        assert.include(big.stderr, "No space left on device")
      })
    ))

  it.scopedLive("a disk volume written inside is readable with fs() after stop, and refused while attached", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("disk1").disk().size(64).create()
        const sb = yield* Sandbox.builder("disk").volume("/data", (m) => m.named("disk1")).create()
        const out = yield* sb.exec("sh", ["-c", "echo inside > /data/file.txt && grep ' /data ' /proc/self/mountinfo"])
        assert.strictEqual(out.exitCode, 0, out.stderr)
        assert.include(out.stdout, "ext4")
        const busy = leftOf(yield* Effect.either(vol.fs().readToString("/file.txt")))
        assert.strictEqual(busy._tag, "VolumeInUse")
        if (busy._tag === "VolumeInUse") assert.deepStrictEqual(busy.holders, ["sandbox disk"])
        const stopped = yield* sb.stop()
        assert.deepStrictEqual(stopped.volumes.map((v) => v.name), ["disk1"])
        assert.strictEqual(yield* vol.fs().readToString("/file.txt"), "inside\n")
        const after = leftOf(yield* Effect.either(sb.exec("true")))
        assert.strictEqual(after.reason, "Exec")
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("two sandboxes share a directory volume; a second writer of a disk volume is refused", () =>
    withHome(() =>
      Effect.gen(function*() {
        yield* Volume.builder("shared").create()
        yield* Volume.builder("disk2").disk().size(64).create()
        const a = yield* Sandbox.builder("a").volume("/s", (m) => m.named("shared"))
          .volume("/d", (m) => m.named("disk2")).create()
        const b = yield* Sandbox.builder("b").volume("/s", (m) => m.named("shared")).create()
        yield* a.exec("sh", ["-c", "echo from-a > /s/a"])
        assert.strictEqual((yield* b.exec("cat", ["/s/a"])).stdout, "from-a\n")
        yield* b.exec("sh", ["-c", "echo from-b > /s/b"])
        assert.strictEqual((yield* a.exec("cat", ["/s/b"])).stdout, "from-b\n")
        const second = leftOf(
          yield* Effect.either(Effect.scoped(Sandbox.builder("c").volume("/d", (m) => m.named("disk2")).create()))
        )
        assert.strictEqual(second._tag, "VolumeInUse")
      })
    ))

  it.scopedLive("a disk volume may be mounted read-only by several sandboxes at once", () =>
    withHome(() =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("rodisk").disk().size(64).create()
        yield* Effect.scoped(Effect.gen(function*() {
          const writer = yield* Sandbox.builder("w").volume("/d", (m) => m.named("rodisk")).create()
          yield* writer.exec("sh", ["-c", "echo seeded > /d/s"])
        }))
        const a = yield* Sandbox.builder("ra").volume("/d", (m) => m.named("rodisk").readonly()).create()
        const b = yield* Sandbox.builder("rb").volume("/d", (m) => m.named("rodisk").readonly()).create()
        assert.strictEqual((yield* a.exec("cat", ["/d/s"])).stdout, "seeded\n")
        assert.strictEqual((yield* b.exec("cat", ["/d/s"])).stdout, "seeded\n")
        assert.include((yield* b.exec("sh", ["-c", "echo x > /d/t"])).stderr, "Read-only file system")
        const writer = leftOf(
          yield* Effect.either(Effect.scoped(Sandbox.builder("w2").volume("/d", (m) => m.named("rodisk")).create()))
        )
        assert.strictEqual(writer._tag, "VolumeInUse")
        void vol
      })
    ))

  it.scopedLive("execStream delivers stdout and stderr as they come, then the exit code", () =>
    withHome(() =>
      Effect.gen(function*() {
        const sb = yield* Sandbox.builder("stream").create()
        const events = yield* Stream.runCollect(sb.execStream("sh", ["-c", "echo out; echo err >&2; exit 3"]))
        const list = [...events]
        const text = (tag: "Stdout" | "Stderr") =>
          Buffer.concat(list.flatMap((e) => (e._tag === tag ? [e.data] : []))).toString("utf8")
        assert.strictEqual(text("Stdout"), "out\n")
        assert.strictEqual(text("Stderr"), "err\n")
        assert.deepStrictEqual(list.at(-1), Sandbox.ExecEvent.Exit({ exitCode: 3 }))
      })
    ))

  it.scopedLive("remove while mounted fails with VolumeInUse and succeeds after the scope", () =>
    withHome(() =>
      Effect.gen(function*() {
        yield* Volume.builder("busy").create()
        yield* Effect.scoped(Effect.gen(function*() {
          yield* Sandbox.builder("holder").volume("/b", (m) => m.named("busy")).create()
          const refused = leftOf(yield* Effect.either(Volume.remove("busy")))
          assert.strictEqual(refused._tag, "VolumeInUse")
        }))
        yield* Volume.remove("busy")
        assert.strictEqual(leftOf(yield* Effect.either(Volume.get("busy")))._tag, "VolumeNotFound")
      })
    ))

  it.scopedLive("interrupting the scope during a long exec leaves no mount, loop device or process", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const vol = yield* Volume.builder("ivol").create()
        yield* Volume.builder("idisk").disk().size(64).create()
        const marker = "sleep 4242"
        const started = yield* Deferred.make<void>()
        const fiber = yield* Effect.fork(Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("long")
            .volume("/v", (m) => m.named("ivol"))
            .volume("/d", (m) => m.named("idisk"))
            .volume("/t", (m) => m.tmpfs().size(8))
            .create()
          yield* sb.execStream("sh", ["-c", `echo started; ${marker}`]).pipe(
            Stream.tap((event) => event._tag === "Stdout" ? Deferred.succeed(started, undefined) : Effect.void),
            Stream.runDrain
          )
        })))
        yield* Deferred.await(started)
        assert.isNotEmpty(processesMentioning(marker))
        yield* Fiber.interrupt(fiber)
        yield* assertNothingLeft(dir, marker)
        yield* Volume.remove("ivol")
        yield* Volume.remove("idisk")
        void vol
      })
    ))

  it.scopedLive("interrupting a start while the keeper is still starting returns and leaves nothing", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        // A bubblewrap that never comes up: the keeper waits for it until it is given up on.
        const bin = join(dir, "slow-bin")
        mkdirSync(bin)
        chmodSync(dir, 0o711)
        const marker = "sleep 4343"
        writeScript(join(bin, "bwrap"), `#!/bin/sh\nexec ${marker}\n`)
        yield* Effect.acquireRelease(
          Effect.sync(() => {
            const path = process.env.PATH
            process.env.PATH = `${bin}:${path}`
            return path
          }),
          (path) => Effect.sync(() => void (process.env.PATH = path))
        )
        yield* Volume.builder("slow").create()
        const fiber = yield* Effect.fork(Effect.scoped(
          Sandbox.builder("slow").volume("/v", (m) => m.named("slow")).volume("/t", (m) => m.tmpfs().size(8)).create()
        ))
        yield* Effect.repeat(Effect.sync(() => processesMentioning(marker).length > 0), {
          until: (blocked) => blocked,
          schedule: Schedule.spaced("20 millis")
        })
        yield* Fiber.interrupt(fiber)
        yield* assertNothingLeft(dir, marker)
        // The start's hold on the volume went with it.
        yield* Volume.remove("slow")
      })
    ), 30_000)

  it.scopedLive("a failed start removes the volumes it created and keeps the ones that existed", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const old = yield* Volume.builder("old").create()
        yield* old.fs().write("/keep.txt", "keep")
        const failed = leftOf(
          yield* Effect.either(Effect.scoped(
            Sandbox.builder("fails")
              .volume("/old", (m) => m.namedWith("old", (n) => n.ensureExists()))
              .volume("/new", (m) => m.namedWith("fresh", (n) => n.create()))
              .volume("/missing", (m) => m.bind(join(dir, "does-not-exist")))
              .create()
          ))
        )
        assert.strictEqual(failed._tag, "InvalidConfig")
        assert.strictEqual(leftOf(yield* Effect.either(Volume.get("fresh")))._tag, "VolumeNotFound")
        assert.strictEqual(yield* old.fs().readToString("/keep.txt"), "keep")
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive("ensureExists refuses an incompatible volume and never changes it", () =>
    withHome(() =>
      Effect.gen(function*() {
        yield* Volume.builder("dirvol").create()
        const refused = leftOf(
          yield* Effect.either(Effect.scoped(
            Sandbox.builder("x").volume("/v", (m) => m.namedWith("dirvol", (n) => n.ensureExists().disk().size(64)))
              .create()
          ))
        )
        assert.strictEqual(refused._tag, "InvalidConfig")
        if (refused._tag === "InvalidConfig") assert.include(refused.message, "it is a directory volume")
        assert.strictEqual((yield* Volume.get("dirvol")).kind, "directory")
      })
    ))

  it.scopedLive("stop reports fresh usage; the file server keeps a quota'd directory volume within its quota", () =>
    withHome(() =>
      Effect.gen(function*() {
        yield* Volume.builder("q").quota(1).create()
        const sb = yield* Sandbox.builder("grow").volume("/q", (m) => m.named("q")).create()
        const dd = yield* sb.exec("dd", ["if=/dev/zero", "of=/q/blob", "bs=1M", "count=2"])
        assert.include(dd.stderr, "No space left on device")
        const result = yield* sb.stop()
        assert.deepStrictEqual(result.overQuota, [])
        const usage = result.volumes[0]
        assert.isDefined(usage)
        assert.strictEqual(usage?.usedBytes, 1024 * 1024)
        assert.isTrue(Option.contains(usage?.quotaBytes ?? Option.none(), 1024 * 1024))
        assert.strictEqual((yield* Volume.get("q")).usedBytes, usage?.usedBytes)
        assert.deepStrictEqual(yield* sb.stop(), result, "stop runs once")
      })
    ))

  it.scopedLive("exec: interrupting it kills the command; one that leaves a background process returns at its exit", () =>
    withHome(() =>
      Effect.gen(function*() {
        const sb = yield* Sandbox.builder("interrupted").create()
        const marker = "sleep 4545"
        const fiber = yield* Effect.fork(sb.exec("sh", ["-c", `echo started; ${marker}`]))
        yield* Effect.repeat(Effect.sync(() => processesMentioning(marker).length > 0), {
          until: (running) => running,
          schedule: Schedule.spaced("20 millis")
        })
        yield* Fiber.interrupt(fiber)
        assert.deepStrictEqual(processesMentioning(marker), [], "the interrupted command is gone")
        // The background process keeps the output pipes open; the exec ends with its command.
        const background = "sleep 4646"
        const done = yield* sb.exec("sh", ["-c", `${background} & echo out; echo err >&2; exit 3`])
        assert.deepStrictEqual([done.exitCode, done.stdout, done.stderr], [3, "out\n", "err\n"])
        assert.strictEqual((yield* sb.exec("true")).exitCode, 0, "the sandbox survives")
      })
    ))

  it.scopedLive("exec timeout kills the command and fails with reason Timeout", () =>
    withHome(() =>
      Effect.gen(function*() {
        const sb = yield* Sandbox.builder("slow").create()
        const marker = "sleep 4343"
        const timedOut = leftOf(yield* Effect.either(sb.exec("sh", ["-c", marker], { timeout: "300 millis" })))
        assert.strictEqual(timedOut.reason, "Timeout")
        assert.deepStrictEqual(processesMentioning(marker), [])
        const exit = yield* Effect.exit(sb.exec("true"))
        assert.isTrue(Exit.isSuccess(exit), "the sandbox survives a timed-out command")
      })
    ))

  it.scopedLive("a root file-system directory as image: used read-only through an overlay, never written", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const rootfs = join(dir, "rootfs")
        const binaries = ["/usr/bin/dash", "/usr/bin/setpriv", "/usr/bin/cat"]
        const libraries = execFileSync("ldd", binaries, { encoding: "utf8" }).match(/\/\S+\.so[.\d]*/g) ?? []
        for (const file of [...binaries, ...libraries]) {
          // Merged /usr: /lib64/x lives at usr/lib64/x; copyFileSync copies what a link points to.
          const target = join(rootfs, file.startsWith("/usr/") ? file : join("/usr", file))
          mkdirSync(dirname(target), { recursive: true })
          copyFileSync(file, target)
          chmodSync(target, 0o755)
        }
        symlinkSync("usr/bin", join(rootfs, "bin"))
        symlinkSync("usr/lib", join(rootfs, "lib"))
        symlinkSync("usr/lib64", join(rootfs, "lib64"))
        symlinkSync("dash", join(rootfs, "usr/bin/sh"))
        writeFileSync(join(rootfs, "release"), "tiny\n")
        const before = execFileSync("find", [rootfs], { encoding: "utf8" })
        const data = join(dir, "data")
        mkdirSync(data)
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("tiny").image(rootfs).volume("/data", (m) => m.bind(data)).create()
          const out = yield* sb.exec("sh", ["-c", "cat /release; echo hi > /data/x; echo no > /release"])
          assert.strictEqual(out.stdout, "tiny\n")
          assert.include(out.stderr, "Read-only file system")
        }))
        assert.strictEqual(readFileSync(join(data, "x"), "utf8"), "hi\n")
        assert.strictEqual(execFileSync("find", [rootfs], { encoding: "utf8" }), before, "the image directory is unchanged")
        yield* assertNothingLeft(dir)
      })
    ))

  it.scopedLive.skipIf(!hasQsd)("qcow2 images are served through qemu-storage-daemon and loop-mounted", () =>
    withHome((dir) =>
      Effect.gen(function*() {
        const seed = join(dir, "seed")
        mkdirSync(seed)
        writeFileSync(join(seed, "hello.txt"), "from qcow2")
        const raw = join(dir, "img.raw")
        const qcow2 = join(dir, "img.qcow2")
        execFileSync("truncate", ["-s", "32M", raw])
        execFileSync("mkfs.ext4", ["-q", "-F", "-d", seed, raw])
        execFileSync("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, qcow2])
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("q1").volume("/img", (m) => m.disk(qcow2)).create()
          const out = yield* sb.exec("sh", ["-c", "cat /img/hello.txt && echo written > /img/new.txt"])
          assert.strictEqual(out.exitCode, 0, out.stderr)
          assert.strictEqual(out.stdout, "from qcow2")
        }))
        yield* assertNothingLeft(dir)
        yield* Effect.scoped(Effect.gen(function*() {
          const sb = yield* Sandbox.builder("q2").volume("/img", (m) => m.disk(qcow2).readonly()).create()
          assert.strictEqual((yield* sb.exec("cat", ["/img/new.txt"])).stdout, "written\n")
          const write = yield* sb.exec("sh", ["-c", "echo x > /img/other"])
          assert.include(write.stderr, "Read-only file system")
        }))
        yield* assertNothingLeft(dir)
      })
    ))
})

describe("NamespaceRuntime when its process dies", () => {
  it.scopedLive("SIGKILL of the owning process ends the sandbox and releases its mounts and loop device", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const image = join(dir, "disk.raw")
      execFileSync("truncate", ["-s", "16M", image])
      execFileSync("mkfs.ext4", ["-q", "-F", image])
      const { killed, pid: owner, ready } = yield* startHolder("holder.ts", [image])
      assert.include(ready, "ready started")
      assert.isNotEmpty(processesMentioning("sleep 4444"))
      yield* killed
      // The teardown runs in other processes now: wait (bounded) until it is over.
      yield* Effect.sync(() => processesMentioning(stagingPrefix(owner)).length + processesMentioning("sleep 4444").length)
        .pipe(Effect.repeat({ until: (n) => n === 0, schedule: Schedule.spaced("20 millis"), times: 500 }))
      yield* assertNothingLeft(dir, "sleep 4444", owner)
      execFileSync("e2fsck", ["-n", image])
      assert.strictEqual(execFileSync("debugfs", ["-R", "cat /alive", image], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }), "alive\n")
    }))
})
