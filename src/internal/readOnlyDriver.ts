/**
 * A read-only view of an `FsDriver`: reads pass through, every operation that would
 * change the tree fails with `VolumeFsError` reason `ReadOnly` before touching storage.
 * Snapshots of every backend are exposed through it (SPEC §9).
 */
import { Effect } from "effect"
import { VolumeFsError } from "../VolumeError.js"
import type { FsDriver } from "./fsDriver.js"
import * as Paths from "./paths.js"

const readOnly = (path: Paths.Segments) =>
  Effect.fail(new VolumeFsError({ path: Paths.format(path), reason: "ReadOnly", detail: "snapshots are read-only" }))

/** `driver` with every mutation refused. */
export const make = (driver: FsDriver): FsDriver => ({
  stat: driver.stat,
  list: driver.list,
  read: driver.read,
  readStream: driver.readStream,
  measure: driver.measure,
  openWriter: readOnly,
  write: readOnly,
  mkdir: readOnly,
  remove: readOnly,
  removeDir: readOnly,
  rename: (_from, to) => readOnly(to),
  copy: (_from, to) => readOnly(to),
  readlink: driver.readlink,
  watch: driver.watch,
  symlink: (_target, path) => readOnly(path),
  chmod: (path) => readOnly(path),
  setModified: (path) => readOnly(path)
})
