/**
 * A sandbox's file server that died while the sandbox ran (docs/sandboxes.md, "Faults"),
 * as `StopResult.fileServerFailures` reports it.
 */
import { Schema } from "effect"

/**
 * The file server of one mount died while the sandbox ran: from then on every operation on
 * that mount failed (`ENOTCONN`, never a hang) until the sandbox stopped. `stop` cleaned up
 * as usual.
 *
 * @since 0.3.0
 * @category models
 */
export class FileServerFailure extends Schema.Class<FileServerFailure>("FileServerFailure")({
  /** Where the mount was inside the sandbox. */
  guestPath: Schema.String,
  /** The named volume it served, if it was one (`None` for a bind). */
  volume: Schema.OptionFromNullOr(Schema.String),
  /** What happened, for people. */
  reason: Schema.String
}) {}
