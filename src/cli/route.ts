/**
 * Which command a command line names, and the arguments @effect/cli gets for it:
 * - global options may be written anywhere before the command of `run`; they are moved in
 *   front of the subcommand, where @effect/cli wants them;
 * - `--help`/`-h` anywhere before that point asks for the help of the command named so far;
 * - `run`'s options end at its first positional argument (or `--`): everything from there
 *   on is the command line run in the sandbox, options included (`run -v x:/p sh -c 'ls'`);
 *   an option `run` does not know before that point is an error, never part of the
 *   command; `-it` is `-i -t`;
 * - elsewhere a command's own options go before its positional arguments (@effect/cli
 *   reads `put - /f --json` wrongly otherwise).
 */
import type { Node } from "./help.js"
import { nameOf, optionNames } from "./help.js"

/** What the command line asks for. */
export type Route =
  | { readonly _tag: "Help"; readonly path: ReadonlyArray<Node> }
  | { readonly _tag: "Version" }
  | { readonly _tag: "MissingCommand"; readonly path: ReadonlyArray<Node> }
  | { readonly _tag: "UnknownCommand"; readonly path: ReadonlyArray<Node>; readonly name: string }
  | { readonly _tag: "UnknownOption"; readonly path: ReadonlyArray<Node>; readonly option: string }
  | { readonly _tag: "Run"; readonly path: ReadonlyArray<Node>; readonly args: ReadonlyArray<string> }

/** `-it` → `-i -t` when every letter is a flag without a value. */
const unclustered = (arg: string, own: Map<string, boolean>): ReadonlyArray<string> | undefined => {
  if (!/^-[a-zA-Z]{2,}$/.test(arg)) return undefined
  const flags = [...arg.slice(1)].map((letter) => `-${letter}`)
  return flags.every((flag) => own.get(flag) === false) ? flags : undefined
}

/** Finds the command `args` (after the program name) names and the arguments to parse for it. */
export const route = (tree: Node, args: ReadonlyArray<string>): Route => {
  const globals = optionNames(tree.command)
  const path: Array<Node> = [tree]
  const hoisted: Array<string> = []
  const rest: Array<string> = []
  // Positional arguments of the leaf command (and what followed `--`), placed after its options.
  const positionals: Array<string> = []
  const afterDashes: Array<string> = []
  let leading = 0
  let help = false
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const node = path[path.length - 1]!
    if (arg === "--") {
      afterDashes.push(...args.slice(i + 1))
      break
    }
    if (arg === "--help" || arg === "-h") {
      help = true
      continue
    }
    if (arg === "--version" && path.length === 1) return { _tag: "Version" }
    if (arg.startsWith("-") && arg !== "-") {
      const flag = arg.includes("=") ? arg.slice(0, arg.indexOf("=")) : arg
      const own = optionNames(node.command)
      const target = globals.has(flag) ? hoisted : rest
      const takesValue = globals.get(flag) ?? own.get(flag)
      if (!globals.has(flag) && node.commandLineAfterArgs) {
        const flags = unclustered(arg, own)
        if (flags !== undefined) {
          rest.push(...flags)
          continue
        }
        if (!own.has(flag)) return { _tag: "UnknownOption", path, option: arg }
      }
      target.push(arg)
      if (takesValue === true && !arg.includes("=") && i + 1 < args.length) target.push(args[++i]!)
      continue
    }
    if (node.children.length === 0) {
      if (node.commandLineAfterArgs) {
        afterDashes.push(...args.slice(i))
        break
      }
      positionals.push(arg)
      continue
    }
    if (leading < (node.leadingArgs ?? 0)) {
      leading++
      rest.push(arg)
      continue
    }
    const child = node.children.find((c) => nameOf(c) === arg)
    if (child === undefined) return help ? { _tag: "Help", path } : { _tag: "UnknownCommand", path, name: arg }
    path.push(child)
    rest.push(arg)
    leading = 0
  }
  if (help || args.length === 0) return { _tag: "Help", path }
  const last = path[path.length - 1]!
  if (last.children.length > 0) return { _tag: "MissingCommand", path }
  const operands = [...positionals, ...afterDashes]
  return { _tag: "Run", path, args: [...hoisted, ...rest, ...(operands.length > 0 ? ["--", ...operands] : [])] }
}
