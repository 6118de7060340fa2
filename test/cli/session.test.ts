/**
 * A terminal session with the built `volumes` binary, typed into tmux and recorded
 * (`pipe-pane` keeps every byte the terminal got, `capture-pane` the screen): a `put`
 * with a progress bar, `prune` asking `[y/N]`, and `run -it` with a shell on a real
 * terminal (its size, a resize, Ctrl-C, the exit status).
 */
import { assert, describe, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"
import { Effect, Schedule } from "effect"
import { MAIN, quote, run, tempDir } from "./harness.js"

/** Starts a detached tmux session; the server it may start must not keep our pipes open. */
const newSession = (args: ReadonlyArray<string>) =>
  Effect.async<void>((resume) => {
    const child = spawn("tmux", ["new-session", ...args], { stdio: "ignore" })
    child.on("exit", (code) => resume(code === 0 ? Effect.void : Effect.dieMessage(`tmux new-session exited with ${code}`)))
  })

const tmux = (...args: ReadonlyArray<string>) =>
  Effect.flatMap(run("tmux", args), (result) =>
    result.code === 0 ? Effect.succeed(result.stdout) : Effect.dieMessage(`tmux ${args.join(" ")}: ${result.stderr}`))

/** A tmux session running a plain shell, killed when the scope closes. */
const terminal = (dir: string, env: Record<string, string>) =>
  Effect.gen(function*() {
    const name = `volumes-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`
    const exports = Object.entries(env).map(([k, v]) => `export ${k}=${quote(v)}`).join("; ")
    yield* Effect.acquireRelease(
      newSession(["-d", "-s", name, "-x", "100", "-y", "30", `${exports}; exec sh`]),
      () => Effect.ignore(tmux("kill-session", "-t", name))
    )
    const recording = NodePath.join(dir, "session.raw")
    yield* tmux("pipe-pane", "-t", name, "-o", `cat >> ${quote(recording)}`)
    // -J joins wrapped lines (and keeps trailing blanks, which are dropped here).
    const screen = Effect.map(tmux("capture-pane", "-p", "-J", "-S", "-", "-t", name), (text) => text.replace(/ +$/gm, ""))
    const type = (text: string) => tmux("send-keys", "-t", name, "-l", text).pipe(Effect.zipRight(tmux("send-keys", "-t", name, "Enter")))
    /** Waits until the screen has `count` matches of `pattern` (a hang fails the test after a minute). */
    const waitFor = (pattern: RegExp, count = 1) =>
      screen.pipe(
        Effect.filterOrFail((text) => (text.match(new RegExp(pattern.source, pattern.flags + "g")) ?? []).length >= count, () => "not yet"),
        Effect.retry(Schedule.spaced("300 millis").pipe(Schedule.compose(Schedule.recurs(200)))),
        Effect.orElse(() => Effect.flatMap(screen, (text) => Effect.dieMessage(`${pattern} never appeared; screen:\n${text}`)))
      )
    return {
      type,
      waitFor,
      keys: (...keys: ReadonlyArray<string>) => tmux("send-keys", "-t", name, ...keys),
      resize: (cols: number, rows: number) => tmux("resize-window", "-t", name, "-x", String(cols), "-y", String(rows)),
      recording: Effect.sync(() => NodeFs.readFileSync(recording, "latin1"))
    }
  })

describe("volumes on a terminal (tmux)", () => {
  // Live clock: the test waits for the screen in real time.
  it.scopedLive("put with a progress bar, prune asking [y/N], run -it with a shell", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir
      const bin = NodePath.join(dir, "bin")
      NodeFs.mkdirSync(bin)
      NodeFs.writeFileSync(
        NodePath.join(bin, "volumes"),
        `#!/bin/sh\nexec ${quote(process.execPath)} ${quote(MAIN)} --home ${quote(NodePath.join(dir, "home"))} "$@"\n`,
        { mode: 0o755 }
      )
      const data = NodePath.join(dir, "data.bin")
      NodeFs.writeFileSync(data, Buffer.alloc(8 * 1024 * 1024, 1))
      const t = yield* terminal(dir, {
        PATH: `${bin}:${process.env.PATH}`,
        PS1: "$ ",
        VOLUMES_PROGRESS_DELAY_MS: "0",
        TERM: "xterm"
      })

      // Each command is typed once the shell's prompt is back: a command typed before it is
      // echoed ahead of the prompt, and the screen no longer reads as a session.
      yield* t.type("volumes create data")
      yield* t.waitFor(/^data\n\$$/m)
      yield* t.type(`volumes fs data put ${data} /`)
      const afterPut = yield* t.waitFor(/copied 1 file \(8\.0 MiB\) to \/data\.bin\n\$$/m)
      // The bar was drawn, then its line cleared: the screen shows the summary right below the command.
      assert.match(yield* t.recording, /put \S+data\.bin\s+\[#+\]\s+100%\s+8\.0 MiB \/ 8\.0 MiB/)
      assert.match(afterPut, /fs data put \S+ \/\ncopied 1 file/)

      yield* t.type("volumes prune")
      yield* t.waitFor(/Are you sure you want to continue\? \[y\/N\]/)
      yield* t.type("n")
      yield* t.waitFor(/\[y\/N\] n\nnothing removed\n\$$/m)
      yield* t.type("volumes prune")
      yield* t.waitFor(/\[y\/N\]/, 2)
      // The shell's next prompt, too: a command typed before it is echoed ahead of the prompt.
      const pruned = yield* t.type("y").pipe(Effect.zipRight(t.waitFor(/\[y\/N\] y\nremoved data\n\$$/m)))
      assert.include(pruned, "WARNING! This removes 1 volume (8.0 MiB) and their data:\n  data (8.0 MiB)")

      yield* t.type("volumes run -it --create-volumes -v work:/work -- sh; echo status=$?")
      yield* t.waitFor(/^#$/m)
      yield* t.type("stty size; tty")
      yield* t.waitFor(/^30 100\n\/dev\/pts\/\d+$/m)
      yield* t.resize(120, 40)
      yield* t.type("stty size")
      yield* t.waitFor(/^40 120$/m)
      yield* t.type("sleep 600")
      yield* t.keys("C-c")
      yield* t.type("echo interrupted-$?")
      yield* t.waitFor(/^interrupted-130$/m)
      yield* t.type("exit 3")
      yield* t.waitFor(/^status=3$/m)
    }), 600_000)
})
