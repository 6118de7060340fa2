/**
 * docs/cli.md shows the real help of every command (regenerate with `npm run docs:cli`).
 */
import { assert, describe, it } from "@effect/vitest"
import * as NodeFs from "node:fs"
import { DOC, documented, helpTexts, rewrite } from "./helpDocs.js"

describe("docs/cli.md", () => {
  it("shows the help of every command as the binary prints it", () => {
    const doc = NodeFs.readFileSync(DOC, "utf8")
    const texts = helpTexts()
    assert.deepStrictEqual(documented(doc).sort(), [...texts.keys()].sort(), "a command without a help block (or a block of no command)")
    assert.strictEqual(rewrite(doc, texts), doc, "docs/cli.md is out of date: run npm run docs:cli")
  }, 300_000)
})
