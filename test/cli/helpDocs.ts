/**
 * The help of every `volumes` command, taken from the built binary, and the blocks of
 * docs/cli.md that show it:
 *
 *   <!-- help: volumes create -->
 *   ```text
 *   ...the output of `volumes create --help`...
 *   ```
 *   <!-- /help -->
 *
 * `npm run docs:cli` rewrites the blocks; test/cli/docs.test.ts fails when they differ
 * from the binary.
 */
import { execFileSync } from "node:child_process"
import * as NodeFs from "node:fs"
import * as NodePath from "node:path"

const MAIN = process.env.VOLUMES_CLI_MAIN ?? NodePath.resolve(import.meta.dirname, "../../dist/cli/main.js")
export const DOC = NodePath.resolve(import.meta.dirname, "../../docs/cli.md")

const help = (args: ReadonlyArray<string>): string =>
  execFileSync(process.execPath, [MAIN, ...args, "--help"], { encoding: "utf8", env: { ...process.env, NO_COLOR: "1" } })

/** `volumes ...` → help text, for the root and every command below it. */
export const helpTexts = (): Map<string, string> => {
  const out = new Map<string, string>()
  const visit = (words: ReadonlyArray<string>) => {
    const text = help(words)
    // "Usage: volumes fs NAME COMMAND" names how to reach the subcommands.
    const usage = /^Usage: volumes(.*)$/m.exec(text)?.[1]?.trim().split(" ") ?? []
    out.set(["volumes", ...words.filter((w) => w !== "NAME")].join(" "), text)
    const commands = /\nCommands:\n((?: {2}\S.*\n)+)/.exec(text)?.[1]
    if (commands === undefined) return
    const prefix = usage[usage.length - 1] === "COMMAND" && words.length > 0 ? usage.slice(0, -1) : [...words]
    for (const line of commands.trimEnd().split("\n")) visit([...prefix, line.trim().split(/\s+/)[0]!])
  }
  visit([])
  return out
}

const BLOCK = /<!-- help: ([^>]+?) -->\n```text\n[\s\S]*?```\n<!-- \/help -->/g

/** docs/cli.md with every help block replaced by the binary's help. */
export const rewrite = (doc: string, texts: Map<string, string>): string =>
  doc.replace(BLOCK, (block, name: string) => {
    const text = texts.get(name)
    return text === undefined ? block : `<!-- help: ${name} -->\n\`\`\`text\n${text}\`\`\`\n<!-- /help -->`
  })

/** The commands docs/cli.md shows the help of. */
export const documented = (doc: string): Array<string> => [...doc.matchAll(BLOCK)].map((m) => m[1]!)

if (process.argv.includes("--write")) {
  NodeFs.writeFileSync(DOC, rewrite(NodeFs.readFileSync(DOC, "utf8"), helpTexts()))
}
