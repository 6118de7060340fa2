#!/usr/bin/env node
/**
 * The `volumes` command line: `volumes --help` lists the commands, `docs/cli.md`
 * describes them with examples and the table of exit codes.
 */
import { Command, ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Effect, Exit, Option } from "effect"
import { exportCommand, importCommand } from "./archiveCommands.js"
import { describe, EXIT_INTERRUPTED, EXIT_UNEXPECTED, EXIT_USAGE } from "./errors.js"
import { fsCommand } from "./fsCommands.js"
import { GLOBAL_FLAGS, root } from "./root.js"
import * as Run from "./runCommand.js"
import { forkCommand, restoreCommand, snapshotCommand } from "./snapshotCommands.js"
import { create, inspect, ls, prune, rm } from "./volumeCommands.js"
import * as Lifecycle from "./lifecycleCommands.js"

const VERSION = "0.1.0"

const command = root.pipe(
  Command.withDescription("manage persistent named volumes (local or S3) and run sandboxes with them"),
  Command.withSubcommands([create, ls, inspect, rm, fsCommand, exportCommand, importCommand, prune, Run.runCommand, snapshotCommand, forkCommand, restoreCommand, Lifecycle.label, Lifecycle.update])
)

const cli = Command.run(command, { name: "volumes", version: VERSION })

/**
 * Global options may be written anywhere before `--`; @effect/cli wants them before the
 * subcommand, so they are moved there.
 */
export const hoistGlobalOptions = (args: ReadonlyArray<string>): Array<string> => {
  const globals: Array<string> = []
  const rest: Array<string> = []
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    if (arg === "--") {
      rest.push(...args.slice(i))
      break
    }
    const flag = arg.includes("=") ? arg.slice(0, arg.indexOf("=")) : arg
    if (GLOBAL_FLAGS.includes(flag)) {
      globals.push(arg)
      if (!arg.includes("=") && i + 1 < args.length) globals.push(args[++i]!)
      continue
    }
    rest.push(arg)
  }
  return [...globals, ...rest]
}

const report = (line: string, code: number) =>
  Effect.sync(() => {
    process.stderr.write(`${line}\n`)
    return code
  })

const program = Effect.suspend(() => cli([...process.argv.slice(0, 2), ...hoistGlobalOptions(process.argv.slice(2))])).pipe(
  Effect.as(0),
  Effect.catchAll((error) => {
    // @effect/cli has already printed what was wrong with the command line.
    if (ValidationError.isValidationError(error)) {
      return Effect.succeed(ValidationError.isHelpRequested(error) ? 0 : EXIT_USAGE)
    }
    const { code, line } = describe(error)
    return report(line, code)
  }),
  Effect.catchAllCause((cause) =>
    Cause.isInterruptedOnly(cause)
      ? Effect.succeed(EXIT_INTERRUPTED)
      : report(
        process.env.VOLUMES_DEBUG
          ? `error: unexpected failure\n${Cause.pretty(cause)}`
          : `error: unexpected failure: ${Option.match(Cause.dieOption(cause), { onNone: () => Cause.pretty(cause).split("\n")[0], onSome: (d) => d instanceof Error ? d.message : String(d) })} (set VOLUMES_DEBUG=1 for details)`,
        EXIT_UNEXPECTED
      )
  ),
  Effect.map((code) => (code === 0 && Run.runExitCode !== undefined ? Run.runExitCode : code)),
  Effect.provide(NodeContext.layer)
)

NodeRuntime.runMain(program, {
  disableErrorReporting: true,
  teardown: (exit, onExit) =>
    onExit(
      Exit.isSuccess(exit) && typeof exit.value === "number"
        ? exit.value
        : Exit.isFailure(exit) && Cause.isInterruptedOnly(exit.cause)
        ? EXIT_INTERRUPTED
        : EXIT_UNEXPECTED
    )
})
