/**
 * Help text and command-line routing of `volumes`, rendered from @effect/cli's own data
 * (`Command.getUsage`, `Command.getHelp`) in our own format: plain text unless stdout is a
 * terminal and `NO_COLOR` is unset; usage lines that name the program; optional options in
 * brackets; no generic filler ("A user-defined piece of text."). @effect/cli's built-in
 * `--wizard` and `--log-level` still parse but are not listed (they are not part of this
 * program's interface, and @effect/cli 0.77 cannot remove them).
 */
import type { Command } from "@effect/cli"
import { CliConfig, Command as Cmd, HelpDoc } from "@effect/cli"
import type { Span } from "@effect/cli/HelpDoc/Span"
import type { Usage } from "@effect/cli/Usage"
import { GLOBAL_FLAGS, root } from "./root.js"

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyCommand = Command.Command<any, any, any, any>

/** One command of the tree, as help and routing see it. */
export interface Node {
  /** The command's own options and arguments (without its subcommands). */
  readonly command: AnyCommand
  readonly children: ReadonlyArray<Node>
  /** Positional arguments the command takes before its subcommand (`fs NAME ls`). */
  readonly leadingArgs?: number
  /** Everything after the first positional argument belongs to the command run (`run`). */
  readonly commandLineAfterArgs?: boolean
}

const HELP_CONFIG = CliConfig.make({ showBuiltIns: false, showAllNames: true, showTypes: true })

const spanText = (span: Span): string => {
  switch (span._tag) {
    case "Text":
    case "URI":
      return span.value
    case "Sequence":
      return spanText(span.left) + spanText(span.right)
    default:
      return spanText(span.value)
  }
}

/** The blocks of a help document in order, with the section header each falls under. */
const blocks = (doc: HelpDoc.HelpDoc, section: { current: string }, out: Array<[string, HelpDoc.HelpDoc]>) => {
  if (doc._tag === "Sequence") {
    blocks(doc.left, section, out)
    blocks(doc.right, section, out)
  } else if (doc._tag === "Header") {
    section.current = spanText(doc.value)
  } else if (doc._tag !== "Empty") {
    out.push([section.current, doc])
  }
  return out
}

const paragraphs = (doc: HelpDoc.HelpDoc): Array<string> =>
  doc._tag === "Sequence"
    ? [...paragraphs(doc.left), ...paragraphs(doc.right)]
    : doc._tag === "Paragraph"
    ? [spanText(doc.value)]
    : []

/** What @effect/cli says of every option of a type; the user's own text starts in lower case. */
const FILLER = /^(A |An |One of the following|This (setting|option|argument) (is optional|may be repeated|must be repeated|can be set|is a property))/

const description = (doc: HelpDoc.HelpDoc): string => {
  const texts = paragraphs(doc)
  const own = texts.filter((text) => !FILLER.test(text))
  const fallback = texts.map((text) => /Defaults to: (.*)$/.exec(text)?.[1]).find((value) => value !== undefined)
  const shown = fallback === undefined || fallback === "false" || own.some((text) => text.includes("default"))
    ? ""
    : ` (default ${fallback.replace(/^'|'$/g, "")})`
  return own.join(" ") + shown
}

/** `(-f, --force)` → `-f, --force`; `<NAME>` → `NAME`; `local | s3` → `local|s3`. */
const termText = (span: Span): string =>
  spanText(span).replace(/^\((.*)\)(\.\.\.)?$/, "$1$2").replace(/<([^>]+)>/g, "$1").replace(/ \| /g, "|").replace(/ \d+\+$/, "...")

/** Description, arguments and options of a command, as (term, description) rows. */
const sections = (command: AnyCommand) => {
  const args: Array<[string, string]> = []
  const options: Array<[string, string]> = []
  const about: Array<string> = []
  for (const [section, doc] of blocks(Cmd.getHelp(command, HELP_CONFIG), { current: "" }, [])) {
    if (section === "DESCRIPTION") about.push(...paragraphs(doc))
    if (doc._tag !== "DescriptionList") continue
    const rows = section === "ARGUMENTS" ? args : section === "OPTIONS" ? options : undefined
    for (const [term, body] of doc.definitions) rows?.push([termText(term), description(body)])
  }
  return { about: about.join(" "), args, options }
}

/** The name a command is called by. */
export const nameOf = (node: Node): string => [...Cmd.getNames(node.command)][0] ?? ""

/** The options of a command: every name, and whether a value follows. */
export const optionNames = (command: AnyCommand): Map<string, boolean> => {
  const out = new Map<string, boolean>()
  const visit = (usage: Usage): void => {
    if (usage._tag === "Named") {
      for (const name of usage.names) if (name.startsWith("-")) out.set(name, usage.acceptedValues._tag === "Some")
    } else if (usage._tag === "Optional" || usage._tag === "Repeated") visit(usage.usage)
    else if (usage._tag === "Concat" || usage._tag === "Alternation") {
      visit(usage.left)
      visit(usage.right)
    }
  }
  visit(Cmd.getUsage(command))
  return out
}

const isOption = (usage: Usage): boolean =>
  usage._tag === "Named"
    ? usage.names.some((name) => name.startsWith("-"))
    : usage._tag === "Optional" || usage._tag === "Repeated"
    ? isOption(usage.usage)
    : false

const longest = (names: ReadonlyArray<string>) => [...names].sort((a, b) => b.length - a.length)[0] ?? ""

/** Usage in the conventional notation: `[--size SIZE]`, `[--label KEY=VALUE]...`, `NAME...`. */
const renderUsage = (usage: Usage): Array<string> => {
  switch (usage._tag) {
    case "Empty":
      return []
    case "Mixed":
      return ["COMMAND"]
    case "Named": {
      const name = longest(usage.names).replace(/^<(.*)>$/, "$1")
      return [usage.acceptedValues._tag === "Some" ? `${name} ${usage.acceptedValues.value.replace(/ \| /g, "|")}` : name]
    }
    case "Optional":
      return [`[${renderUsage(usage.usage).join(" ")}]`]
    case "Repeated": {
      const inner = renderUsage(usage.usage).join(" ")
      // An option that may repeat may also be absent (`Options.repeated` allows zero).
      return [isOption(usage.usage) && !inner.startsWith("[") ? `[${inner}]...` : `${inner}...`]
    }
    case "Alternation":
      return [`${renderUsage(usage.left).join(" ")}|${renderUsage(usage.right).join(" ")}`]
    case "Concat":
      return [...renderUsage(usage.left), ...renderUsage(usage.right)]
  }
}

const splitUsage = (usage: Usage, out: { options: Array<string>; args: Array<string> }) => {
  if (usage._tag === "Concat") {
    splitUsage(usage.left, out)
    splitUsage(usage.right, out)
  } else {
    ;(isOption(usage) ? out.options : out.args).push(...renderUsage(usage))
  }
  return out
}

const style = (): { readonly bold: (text: string) => string } => {
  const color = process.stdout.isTTY === true && (process.env.NO_COLOR ?? "") === ""
  return { bold: (text) => (color ? `\x1b[1m${text}\x1b[0m` : text) }
}

const columns = (rows: ReadonlyArray<readonly [string, string]>): Array<string> => {
  const width = Math.min(28, Math.max(...rows.map(([term]) => term.length)))
  return rows.map(([term, text]) =>
    text === "" ? `  ${term}` : term.length > width ? `  ${term}\n  ${" ".repeat(width)}  ${text}` : `  ${term.padEnd(width)}  ${text}`
  )
}

const globalRows = (): Array<[string, string]> => {
  const { options } = sections(root)
  return options.map(([term, text]) => {
    const variable = GLOBAL_FLAGS.find((g) => term.startsWith(g.flag + " ") || term === g.flag)?.variable
    return [term, variable === undefined ? text : `${text}; $${variable}`]
  })
}

/** The help text of the command at `path` (from the root, e.g. root → fs → ls). */
export const render = (path: ReadonlyArray<Node>): string => {
  const node = path[path.length - 1]!
  const { bold } = style()
  const prefix = commandName(path)
  const own = splitUsage(Cmd.getUsage(node.command), { options: [], args: [] })
  // The usage of a command starts with its own name.
  if (own.args[0] === nameOf(node)) own.args.shift()
  const { about, args, options } = sections(node.command)
  const lines: Array<string> = []
  const dashes = node.commandLineAfterArgs ? ["[--]"] : []
  if (path.length === 1) {
    lines.push(`${bold("Usage:")} volumes [GLOBAL OPTIONS] COMMAND`)
  } else if (node.children.length > 0) {
    lines.push(`${bold("Usage:")} ${[...path.map(nameOf), ...own.args, "COMMAND"].join(" ")}`)
  } else {
    const full = [prefix, ...own.options, ...dashes, ...own.args].join(" ")
    const usage = full.length <= 90 ? full : [prefix, "[OPTIONS]", ...dashes, ...own.args].join(" ")
    lines.push(`${bold("Usage:")} ${usage}`)
  }
  lines.push("", about)
  if (path.length > 1 && args.length > 0) lines.push("", bold("Arguments:"), ...columns(args))
  if (path.length > 1 && options.length > 0) lines.push("", bold("Options:"), ...columns(options))
  if (node.children.length > 0) {
    lines.push("", bold("Commands:"), ...columns(node.children.map((child) => [nameOf(child), sections(child.command).about])))
  }
  if (path.length === 1) {
    lines.push(
      "",
      bold("Global options") + " (anywhere before the command of 'run'; a flag wins over its variable):",
      ...columns([
        ...globalRows(),
        ["-h, --help", "show help (also after any command)"],
        ["--version", "print the version"],
        ["--completions bash|zsh|fish|sh", "print a shell completion script"]
      ]),
      "",
      `Run 'volumes COMMAND --help' for more on a command.`
    )
  } else {
    lines.push("", `${bold("Global options")} (see 'volumes --help'): ${globalRows().map(([term]) => term).join(", ")}`)
  }
  return lines.join("\n") + "\n"
}

/** `volumes fs NAME ls`: how the command at `path` is written. */
export const commandName = (path: ReadonlyArray<Node>): string =>
  path.map((n) => (n.leadingArgs ? `${nameOf(n)} NAME` : nameOf(n))).join(" ")

/** A help document (e.g. a `ValidationError`'s) as one plain line. */
export const plainText = (doc: HelpDoc.HelpDoc): string => paragraphs(doc).join(" ").replace(/\s+/g, " ").trim()
