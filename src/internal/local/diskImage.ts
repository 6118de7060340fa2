/**
 * Disk volume images: sparse raw files holding an ext4 file system, made with e2fsprogs.
 */
import { Effect } from "effect"
import { execFile } from "node:child_process"
import * as NodeFs from "node:fs"
import { StorageError } from "../../VolumeError.js"

const BYTES_PER_MIB = 1024 * 1024

/** e2fsprogs and util-linux live in sbin, which a non-login `PATH` may lack. */
export const toolEnv = (): NodeJS.ProcessEnv => ({
  ...process.env,
  PATH: [process.env["PATH"], "/usr/local/sbin", "/usr/sbin", "/sbin"].filter((part) => part !== undefined).join(":")
})

const describe = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * Runs a host tool to completion and returns its stdout; a failure to start it or an exit
 * code other than 0 (and `alsoOk`, e.g. e2fsck's 1, "errors corrected") is a
 * `StorageError` carrying its stderr. Interruption kills it.
 */
export const runTool = (
  command: string,
  args: ReadonlyArray<string>,
  what: string,
  alsoOk: ReadonlyArray<number> = []
): Effect.Effect<{ readonly stdout: string; readonly stderr: string }, StorageError> =>
  Effect.async((resume) => {
    const child = execFile(command, args, { env: toolEnv(), maxBuffer: 16 * BYTES_PER_MIB }, (error, stdout, stderr) => {
      const exitCode = error === null ? 0 : error.code
      resume(
        error === null || (typeof exitCode === "number" && alsoOk.includes(exitCode))
          ? Effect.succeed({ stdout, stderr })
          : Effect.fail(
            new StorageError({
              message: `${what} failed: ${command} ${args.join(" ")}: ${stderr.trim() || describe(error)}`,
              cause: error
            })
          )
      )
    })
    return Effect.sync(() => child.kill("SIGKILL"))
  })

/**
 * Creates `imagePath` (which must not exist) as a sparse file of `sizeMib` MiB holding an empty
 * ext4 file system: 4 KiB blocks, owned by root, no reserved blocks (a volume is not a
 * system disk, so unprivileged sandbox users may fill it), and no `lost+found`, so a new
 * disk volume lists empty. The journal is kept: sandboxes write through the kernel's
 * ext4 driver and may be killed at any time. Inode tables and the journal are not zeroed
 * (`lazy_*_init`): the file is fresh and sparse, so they read as zeros already, and the
 * image stays small (a 20 GiB image allocates ~4 MiB instead of ~130 MiB).
 */
export const formatDiskImage = (imagePath: string, sizeMib: number): Effect.Effect<void, StorageError> =>
  Effect.gen(function*() {
    yield* Effect.tryPromise({
      try: async () => {
        // "wx": never truncate an existing file, which could be an image someone has attached.
        const handle = await NodeFs.promises.open(imagePath, "wx", 0o600)
        try {
          await handle.truncate(sizeMib * BYTES_PER_MIB)
        } finally {
          await handle.close()
        }
      },
      catch: (error) => new StorageError({ message: `cannot create the disk image ${imagePath}: ${describe(error)}`, cause: error })
    })
    yield* runTool(
      "mkfs.ext4",
      ["-q", "-F", "-b", "4096", "-m", "0", "-E", "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1", imagePath],
      `formatting the disk image ${imagePath}`
    )
    // debugfs reports a failed request on stderr but still exits 0; anything beyond its
    // version banner is an error.
    const { stderr } = yield* runTool("debugfs", ["-w", "-R", "rmdir lost+found", imagePath], "removing lost+found")
    const complaints = stderr.split("\n").filter((line) => line.trim() !== "" && !line.startsWith("debugfs "))
    if (complaints.length > 0) {
      return yield* new StorageError({ message: `removing lost+found from ${imagePath} failed: ${complaints.join("; ")}` })
    }
  })

/**
 * Bytes the image really occupies on the host (`st_blocks * 512`), which for a sparse
 * image is far less than its size.
 */
export const allocatedBytes = (imagePath: string): Effect.Effect<number, StorageError> =>
  Effect.tryPromise({
    try: () => NodeFs.promises.stat(imagePath),
    catch: (error) => new StorageError({ message: `cannot measure the disk image ${imagePath}: ${describe(error)}`, cause: error })
  }).pipe(Effect.map((stat) => stat.blocks * 512))
