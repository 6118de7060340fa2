import { Schema } from "effect"

/**
 * A tar archive is malformed, holds an entry that cannot be imported, or the volume
 * changed while it was exported.
 *
 * @since 0.1.0
 * @category errors
 */
export class ArchiveError extends Schema.TaggedError<ArchiveError>()("ArchiveError", {
  /** The archive entry or volume path concerned ("" for the archive as a whole). */
  entry: Schema.String,
  message: Schema.String
}) {}
