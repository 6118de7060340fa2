/**
 * effect-volumes: persistent named volumes for sandboxes.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as Archive from "./Archive.js"
/** @since 0.1.0 */
export * as LocalBackend from "./LocalBackend.js"
/** @since 0.1.0 */
export * as MemoryBackend from "./MemoryBackend.js"
/** @since 0.1.0 */
export * as Mount from "./Mount.js"
/** @since 0.1.0 */
export * as NamespaceRuntime from "./NamespaceRuntime.js"
/** @since 0.1.0 */
export * as S3Backend from "./S3Backend.js"
/** @since 0.1.0 */
export * as Sandbox from "./Sandbox.js"
/** @since 0.1.0 */
export * as Size from "./Size.js"
/** @since 0.1.0 */
export * as Volume from "./Volume.js"
/** @since 0.1.0 */
export * as VolumeBackend from "./VolumeBackend.js"
/** @since 0.1.0 */
export * as VolumeFs from "./VolumeFs.js"
/** @since 0.2.0 */
export * as VolumeSnapshot from "./VolumeSnapshot.js"
/** @since 0.1.0 */
export * as VolumeSpec from "./VolumeSpec.js"
/** @since 0.1.0 */
export * from "./VolumeError.js"
/** @since 0.1.0 */
export { SandboxRuntime } from "./Sandbox.js"
