import { Effect } from "effect"
import { run } from "../test/cli/harness.js"
const name = process.argv[2]!
Effect.runPromise(run("tmux", ["capture-pane", "-p", "-J", "-S", "-", "-t", name])).then((r) => console.log(JSON.stringify(r.stdout), r.code, r.stderr))
