/**
 * The namespace runtime's native pieces: `ev-sandbox-helper` (scripts/sandbox-helper.c:
 * user namespace, idmapped mounts, entering a sandbox) and the seccomp profile compiled to
 * BPF (scripts/seccomp-profile.py). `scripts/install.sh` builds them; otherwise the first
 * sandbox builds them (needs `cc` and python3-seccomp), once, into a cache directory keyed
 * by the sources' hash, so an edited source is rebuilt and never mixed with an old build.
 */
import { execFile } from "node:child_process"
import { createHash } from "node:crypto"
import { existsSync, readFileSync } from "node:fs"
import { homedir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { Effect } from "effect"
import { SandboxError } from "../../VolumeError.js"

/** Where the sources live: `scripts/` of the package (from `src/` and from `dist/` alike). */
const SCRIPTS = fileURLToPath(new URL("../../../scripts/", import.meta.url))
const SOURCES = ["sandbox-helper.c", "seccomp-profile.py"]

/** What a sandbox start needs from the build. */
export interface Artifacts {
  readonly helper: string
  readonly seccomp: string
}

/** `$EFFECT_VOLUMES_CACHE_DIR`, else `$XDG_CACHE_HOME/effect-volumes`, else `~/.cache/effect-volumes`. */
export const cacheRoot = (): string =>
  process.env["EFFECT_VOLUMES_CACHE_DIR"] ??
    join(process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "effect-volumes")

/** The same hash scripts/build-sandbox-helper.sh computes (sha256 of the sources, concatenated). */
const buildDirectory = (): string => {
  const hash = createHash("sha256")
  for (const source of SOURCES) hash.update(readFileSync(join(SCRIPTS, source)))
  return join(cacheRoot(), `sandbox-${hash.digest("hex").slice(0, 16)}`)
}

const artifactsIn = (dir: string): Artifacts => ({
  helper: join(dir, "ev-sandbox-helper"),
  seccomp: join(dir, "seccomp.bpf")
})

const fail = (message: string) => new SandboxError({ sandbox: "-", reason: "Start", message })

const build = Effect.gen(function*() {
  const dir = yield* Effect.try({
    try: buildDirectory,
    catch: (error) => fail(`the sandbox helper's sources are missing under ${SCRIPTS}: ${String(error)}`)
  })
  const artifacts = artifactsIn(dir)
  if (existsSync(artifacts.helper) && existsSync(artifacts.seccomp)) return artifacts
  yield* Effect.async<void, SandboxError>((resume) => {
    execFile(join(SCRIPTS, "build-sandbox-helper.sh"), [dir], (error, _stdout, stderr) => {
      resume(
        error === null ? Effect.void : Effect.fail(
          fail(
            `cannot build the sandbox helper and seccomp profile (run scripts/install.sh; needs cc and ` +
              `python3-seccomp): ${stderr.trim() || error.message}`
          )
        )
      )
    })
  })
  return artifacts
})

let built: Artifacts | undefined

/** The helper and the seccomp profile, built on first use. */
export const artifacts: Effect.Effect<Artifacts, SandboxError> = Effect.suspend(() =>
  built !== undefined ? Effect.succeed(built) : Effect.tap(build, (done) =>
    Effect.sync(() => {
      built = done
    }))
)
