#!/usr/bin/env node
/**
 * The `volumes` command line: `volumes --help` lists the commands, `docs/cli.md`
 * describes them with examples and the table of exit codes.
 *
 * Everything runs inside one Effect program: failures (including a closed stdout and the
 * exit status of `run`'s command) travel as typed values and become the exit code only
 * after every scope has closed, so sandboxes stop and records are released first.
 */
import { Command, ValidationError } from "@effect/cli"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as NodeRuntime from "@effect/platform-node/NodeRuntime"
import { Cause, Console, Effect, Exit, Option } from "effect"
import { exportCommand, importCommand } from "./archiveCommands.js"
import { describe, EXIT_INTERRUPTED, EXIT_UNEXPECTED, UsageError } from "./errors.js"
import { fsParent, fsSubcommands } from "./fsCommands.js"
import type { Node } from "./help.js"
import * as Help from "./help.js"
import { backendLayer, root } from "./root.js"
import { route } from "./route.js"
import { runCommand } from "./runCommand.js"
import { forkCommand, restoreCommand, snapshotCommand, snapshotParent, snapshotSubcommands } from "./snapshotCommands.js"
import { writeStdout } from "./stdio.js"
import { prune } from "./prune.js"
import { create, df, inspect, ls, rm } from "./volumeCommands.js"
import * as Lifecycle from "./lifecycleCommands.js"

/** The version `--version` prints (kept equal to package.json's by a test). */
export const VERSION = "0.1.0"

const leaf = (command: Node["command"]): Node => ({ command, children: [] })

/** The command tree, for help and routing. */
const tree: Node = {
  command: root,
  children: [
    leaf(create),
    leaf(ls),
    leaf(inspect),
    leaf(rm),
    leaf(df),
    { command: fsParent, children: fsSubcommands.map(leaf), leadingArgs: 1 },
    leaf(exportCommand),
    leaf(importCommand),
    leaf(prune),
    { command: runCommand, children: [], commandLineAfterArgs: true },
    { command: snapshotParent, children: snapshotSubcommands.map(leaf) },
    leaf(forkCommand),
    leaf(restoreCommand),
    leaf(Lifecycle.label),
    leaf(Lifecycle.update),
    leaf(Lifecycle.resize),
    leaf(Lifecycle.rename)
  ]
}

const command = root.pipe(
  Command.withSubcommands([
    create,
    ls,
    inspect,
    rm,
    df,
    fsParent.pipe(Command.withSubcommands(fsSubcommands)),
    exportCommand,
    importCommand,
    prune,
    runCommand,
    snapshotCommand,
    forkCommand,
    restoreCommand,
    Lifecycle.label,
    Lifecycle.update,
    Lifecycle.resize,
    Lifecycle.rename
  ]),
  Command.provide((globals) => backendLayer(globals))
)

const cli = Command.run(command, { name: "volumes", version: VERSION })


/** @effect/cli prints its own (coloured, unprefixed) report of a bad command line; ours replaces it. */
const withoutCliErrorOutput = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.console, (console) => Effect.withConsole(effect, { ...console, error: () => Effect.void }))

const usage = (message: string, path: ReadonlyArray<Node>) => new UsageError({ message, command: Help.commandName(path) })

const names = (nodes: ReadonlyArray<Node>) => nodes.map(Help.nameOf).join(", ")

const program = Effect.gen(function*() {
  const routed = route(tree, process.argv.slice(2))
  switch (routed._tag) {
    case "Help":
      return yield* writeStdout(Help.render(routed.path))
    case "Version":
      return yield* writeStdout(`${VERSION}\n`)
    case "MissingCommand": {
      const last = routed.path[routed.path.length - 1]!
      return yield* usage(`'${Help.commandName(routed.path)}' needs a command: ${names(last.children)}`, routed.path)
    }
    case "UnknownCommand": {
      const last = routed.path[routed.path.length - 1]!
      return yield* usage(
        `unknown command '${routed.name}' for '${Help.commandName(routed.path)}'; commands: ${names(last.children)}`,
        routed.path
      )
    }
    case "UnknownOption":
      return yield* usage(
        `unknown option '${routed.option}' for '${Help.commandName(routed.path)}' (its options end at the command to run)`,
        routed.path
      )
    case "Run":
      return yield* cli([...process.argv.slice(0, 2), ...routed.args]).pipe(
        withoutCliErrorOutput,
        Effect.catchIf(ValidationError.isValidationError, (error) => usage(Help.plainText(error.error), routed.path))
      )
  }
})

/** One line (or two, for usage errors) on stderr, then the exit code of the error. */
const report = (error: unknown) =>
  Effect.sync(() => describe(error)).pipe(
    Effect.tap(({ line }) => (line === "" ? Effect.void : Console.error(line))),
    Effect.map(({ code }) => code)
  )

const unexpected = (cause: Cause.Cause<unknown>) =>
  Console.error(
    process.env.VOLUMES_DEBUG
      ? `error: unexpected failure\n${Cause.pretty(cause)}`
      : `error: unexpected failure: ${
        Option.match(Cause.dieOption(cause), {
          onNone: () => Cause.pretty(cause).split("\n")[0],
          onSome: (d) => d instanceof Error ? d.message : String(d)
        })
      } (set VOLUMES_DEBUG=1 for details)`
  ).pipe(Effect.as(EXIT_UNEXPECTED))

const exitCode = program.pipe(
  Effect.as(0),
  Effect.catchAll(report),
  Effect.catchAllCause((cause) => Cause.isInterruptedOnly(cause) ? Effect.succeed(EXIT_INTERRUPTED) : unexpected(cause)),
  Effect.provide(NodeContext.layer)
)

NodeRuntime.runMain(exitCode, {
  disableErrorReporting: true,
  teardown: (exit, onExit) =>
    onExit(
      Exit.match(exit, {
        onSuccess: (code) => (typeof code === "number" ? code : EXIT_UNEXPECTED),
        onFailure: (cause) => (Cause.isInterruptedOnly(cause) ? EXIT_INTERRUPTED : EXIT_UNEXPECTED)
      })
    )
})
