/**
 * The root `volumes` command: global options (flag, else environment variable, through
 * `Options.withFallbackConfig`) and the backend they select (given to every subcommand
 * with `Command.provide`).
 */
import { Command, Options } from "@effect/cli"
import { Config, Effect, Layer, Option, Redacted } from "effect"
import * as LocalBackend from "../LocalBackend.js"
import type { VolumeBackend } from "../VolumeBackend.js"
import { InvalidConfig, StorageError } from "../VolumeError.js"

/** An optional text option that falls back to an environment variable. */
const fromFlagOrEnv = (name: string, variable: string, description: string, pseudoName = "TEXT") =>
  Options.text(name).pipe(
    Options.withPseudoName(pseudoName),
    Options.withDescription(description),
    Options.withFallbackConfig(Config.string(variable)),
    Options.optional,
    // An empty variable is as good as none.
    Options.map(Option.filter((value) => value !== ""))
  )

/** Options every subcommand understands (they may appear anywhere before the command of `run`). */
export const globalOptions = {
  home: fromFlagOrEnv("home", "EFFECT_VOLUMES_HOME", "home of the local backend (default ~/.effect-volumes)", "DIR"),
  backend: Options.choice("backend", ["local", "s3"]).pipe(
    Options.withDescription("where volumes live (default local)"),
    Options.withFallbackConfig(Config.literal("local", "s3")("EFFECT_VOLUMES_BACKEND")),
    Options.withDefault("local" as const)
  ),
  s3Endpoint: fromFlagOrEnv("s3-endpoint", "EFFECT_VOLUMES_S3_ENDPOINT", "S3 endpoint URL", "URL"),
  s3Region: fromFlagOrEnv("s3-region", "EFFECT_VOLUMES_S3_REGION", "S3 region (default us-east-1)", "REGION"),
  s3Bucket: fromFlagOrEnv("s3-bucket", "EFFECT_VOLUMES_S3_BUCKET", "S3 bucket", "BUCKET"),
  s3Prefix: fromFlagOrEnv("s3-prefix", "EFFECT_VOLUMES_S3_PREFIX", "key prefix inside the bucket", "PREFIX"),
  s3AccessKeyId: fromFlagOrEnv("s3-access-key-id", "EFFECT_VOLUMES_S3_ACCESS_KEY_ID", "access key id", "KEY"),
  s3SecretAccessKey: fromFlagOrEnv(
    "s3-secret-access-key",
    "EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY",
    "secret access key (prefer the variable: flags show up in process lists)",
    "SECRET"
  ),
  s3PathStyle: Options.choice("s3-path-style", ["true", "false"]).pipe(
    Options.withDescription("path-style bucket addressing (default true)"),
    Options.withFallbackConfig(
      Config.map(Config.boolean("EFFECT_VOLUMES_S3_FORCE_PATH_STYLE"), (on) => (on ? "true" : "false") as "true" | "false")
    ),
    Options.optional
  )
}

/** Each global flag, with the environment variable it falls back to (for help and docs). */
export const GLOBAL_FLAGS: ReadonlyArray<{ readonly flag: string; readonly variable: string; readonly takesValue: boolean }> = [
  { flag: "--home", variable: "EFFECT_VOLUMES_HOME", takesValue: true },
  { flag: "--backend", variable: "EFFECT_VOLUMES_BACKEND", takesValue: true },
  { flag: "--s3-endpoint", variable: "EFFECT_VOLUMES_S3_ENDPOINT", takesValue: true },
  { flag: "--s3-region", variable: "EFFECT_VOLUMES_S3_REGION", takesValue: true },
  { flag: "--s3-bucket", variable: "EFFECT_VOLUMES_S3_BUCKET", takesValue: true },
  { flag: "--s3-prefix", variable: "EFFECT_VOLUMES_S3_PREFIX", takesValue: true },
  { flag: "--s3-access-key-id", variable: "EFFECT_VOLUMES_S3_ACCESS_KEY_ID", takesValue: true },
  { flag: "--s3-secret-access-key", variable: "EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY", takesValue: true },
  { flag: "--s3-path-style", variable: "EFFECT_VOLUMES_S3_FORCE_PATH_STYLE", takesValue: false }
]

/** The root command; subcommands read the global options with `yield* root`. */
export const root = Command.make("volumes", globalOptions).pipe(
  Command.withDescription("manage persistent named volumes (local or S3) and run sandboxes with them")
)

/** The parsed global options. */
export type Globals = Command.Command.ParseConfig<typeof globalOptions>

const s3Layer = (globals: Globals): Layer.Layer<VolumeBackend, InvalidConfig | StorageError> =>
  Layer.unwrapEffect(Effect.gen(function*() {
    const required = {
      endpoint: [globals.s3Endpoint, "--s3-endpoint (or EFFECT_VOLUMES_S3_ENDPOINT)"],
      bucket: [globals.s3Bucket, "--s3-bucket (or EFFECT_VOLUMES_S3_BUCKET)"],
      accessKeyId: [globals.s3AccessKeyId, "--s3-access-key-id (or EFFECT_VOLUMES_S3_ACCESS_KEY_ID)"],
      secretAccessKey: [globals.s3SecretAccessKey, "--s3-secret-access-key (or EFFECT_VOLUMES_S3_SECRET_ACCESS_KEY)"]
    } as const
    const missing = Object.values(required).filter(([value]) => Option.isNone(value)).map(([, flag]) => flag)
    if (missing.length > 0) return yield* new InvalidConfig({ message: `the s3 backend needs ${missing.join(", ")}` })
    const value = (key: keyof typeof required) => Option.getOrElse(required[key][0], () => "")
    // The SDK warns on stderr about Node < 22 on every run; a command line keeps stderr for its own errors.
    process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true"
    const S3Backend = yield* Effect.tryPromise({
      try: () => import("../S3Backend.js"),
      catch: (cause) => new StorageError({ message: `the S3 backend could not be loaded: ${String(cause)}`, cause })
    })
    return S3Backend.layer({
      endpoint: value("endpoint"),
      bucket: value("bucket"),
      region: Option.getOrElse(globals.s3Region, () => "us-east-1"),
      prefix: Option.getOrUndefined(globals.s3Prefix),
      credentials: { accessKeyId: value("accessKeyId"), secretAccessKey: Redacted.make(value("secretAccessKey")) },
      forcePathStyle: Option.getOrElse(globals.s3PathStyle, () => "true") === "true"
    })
  }))

/** The backend the global options select. */
export const backendLayer = (globals: Globals): Layer.Layer<VolumeBackend, InvalidConfig | StorageError> =>
  globals.backend === "s3" ? s3Layer(globals) : LocalBackend.layer({ home: Option.getOrUndefined(globals.home) })
