/**
 * The root `volumes` command: global options and the backend they select.
 */
import { Command, Options } from "@effect/cli"
import { ConfigProvider, Effect, Layer, Option } from "effect"
import * as LocalBackend from "../LocalBackend.js"
import type { VolumeBackend } from "../VolumeBackend.js"
import { InvalidConfig, StorageError } from "../VolumeError.js"

const optionalText = (name: string, description: string) =>
  Options.text(name).pipe(Options.withDescription(description), Options.optional)

/** Options every subcommand understands (they may appear anywhere before `--`). */
export const globalOptions = {
  home: Options.directory("home").pipe(
    Options.withDescription("home of the local backend (default: $EFFECT_VOLUMES_HOME, else ~/.effect-volumes)"),
    Options.optional
  ),
  backend: Options.choice("backend", ["local", "s3"]).pipe(
    Options.withDescription("where volumes live (default: $EFFECT_VOLUMES_BACKEND, else local)"),
    Options.optional
  ),
  s3Endpoint: optionalText("s3-endpoint", "S3 endpoint URL (or $EFFECT_VOLUMES_S3_ENDPOINT)"),
  s3Region: optionalText("s3-region", "S3 region (or $EFFECT_VOLUMES_S3_REGION, default us-east-1)"),
  s3Bucket: optionalText("s3-bucket", "S3 bucket (or $EFFECT_VOLUMES_S3_BUCKET)"),
  s3Prefix: optionalText("s3-prefix", "key prefix inside the bucket (or $EFFECT_VOLUMES_S3_PREFIX)"),
  s3AccessKeyId: optionalText("s3-access-key-id", "access key id (or $EFFECT_VOLUMES_S3_ACCESS_KEY_ID)"),
  s3SecretAccessKey: optionalText(
    "s3-secret-access-key",
    "secret access key (prefer $EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY: flags show up in process lists)"
  ),
  s3PathStyle: Options.choice("s3-path-style", ["true", "false"]).pipe(
    Options.withDescription("path-style bucket addressing (or $EFFECT_VOLUMES_S3_FORCE_PATH_STYLE, default true)"),
    Options.optional
  )
}

/** Names of the global options (for moving them in front of the subcommand). */
export const GLOBAL_FLAGS: ReadonlyArray<string> = [
  "--home",
  "--backend",
  "--s3-endpoint",
  "--s3-region",
  "--s3-bucket",
  "--s3-prefix",
  "--s3-access-key-id",
  "--s3-secret-access-key",
  "--s3-path-style"
]

/** The root command; subcommands read the global options with `yield* root`. */
export const root = Command.make("volumes", globalOptions)

type Globals = Command.Command.ParseConfig<typeof globalOptions>

const s3Layer = (globals: Globals): Layer.Layer<VolumeBackend, InvalidConfig | StorageError> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    // The SDK warns on stderr about Node < 22 on every run; a command line keeps stderr for its own errors.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true"
    const S3Backend = yield* Effect.tryPromise({
      try: () => import("../S3Backend.js"),
      catch: (cause) => new StorageError({ message: `the S3 backend could not be loaded: ${String(cause)}`, cause })
    })
    const flags = new Map<string, string>()
    const put = (key: string, value: Option.Option<string>) => Option.map(value, (v) => flags.set(`EFFECT_VOLUMES_S3_${key}`, v))
    put("ENDPOINT", globals.s3Endpoint)
    put("REGION", globals.s3Region)
    put("BUCKET", globals.s3Bucket)
    put("PREFIX", globals.s3Prefix)
    put("ACCESS_KEY_ID", globals.s3AccessKeyId)
    put("SECRET_ACCESS_KEY", globals.s3SecretAccessKey)
    put("FORCE_PATH_STYLE", globals.s3PathStyle)
    const missing = [
      ["ENDPOINT", "--s3-endpoint"],
      ["BUCKET", "--s3-bucket"],
      ["ACCESS_KEY_ID", "--s3-access-key-id"],
      ["SECRET_ACCESS_KEY", "--s3-secret-access-key"]
    ].filter(([key]) => !flags.has(`EFFECT_VOLUMES_S3_${key}`) && (process.env[`EFFECT_VOLUMES_S3_${key}`] ?? "") === "")
    if (missing.length > 0) {
      return yield* new InvalidConfig({
        message: `the s3 backend needs ${missing.map(([key, flag]) => `${flag} (or EFFECT_VOLUMES_S3_${key})`).join(", ")}`
      })
    }
    const provider = ConfigProvider.fromMap(flags, { pathDelim: "_" }).pipe(ConfigProvider.orElse(() => ConfigProvider.fromEnv()))
    const options = yield* S3Backend.config.pipe(
      Effect.withConfigProvider(provider),
      Effect.mapError((error) =>
        new InvalidConfig({
          message: `the s3 backend settings are invalid: ${String(error).replace(/\s+/g, " ")}`
        })
      )
    )
    return S3Backend.layer(options)
  }))

/** The backend the global options select. */
export const backendLayer = (globals: Globals): Layer.Layer<VolumeBackend, InvalidConfig | StorageError> => {
  const chosen = Option.getOrElse(globals.backend, () => process.env.EFFECT_VOLUMES_BACKEND ?? "local")
  if (chosen === "s3") return s3Layer(globals)
  if (chosen !== "local") {
    return Layer.fail(new InvalidConfig({ message: `EFFECT_VOLUMES_BACKEND=${chosen}: expected "local" or "s3"` }))
  }
  return LocalBackend.layer({ home: Option.getOrUndefined(globals.home) })
}

/** Runs `effect` with the backend the global options select. */
export const withBackend = <A, E, R>(
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | InvalidConfig | StorageError, Exclude<R, VolumeBackend> | Command.Command.Context<"volumes">> =>
  Effect.flatMap(root, (globals) => Effect.provide(effect, backendLayer(globals)))
