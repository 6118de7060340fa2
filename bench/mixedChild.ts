/**
 * One of the processes of the mixed-load row (bench/scale.ts):
 *   mixedChild.ts <home> <id> <durationMs>
 * Cycles create → write 4 KiB → read → get → list → remove on its own volumes of the shared
 * home until the time is up. Prints {"ops":n,"ms":[…latency per operation],"errors":{tag: count}}.
 */
import { Effect } from "effect"
import * as Volume from "../dist/Volume.js"
import { bytes, localRuntime, runner } from "./common.js"

const [home, id, durationArg] = process.argv.slice(2)
const rt = localRuntime(home!)
const run = runner(rt)
const data = bytes(4096, Number(id) + 1)
const until = performance.now() + Number(durationArg)
const ms: Array<number> = []
const errors: Record<string, number> = {}

const timed = async (op: () => Promise<unknown>) => {
  const start = performance.now()
  try {
    await op()
  } catch (e) {
    const text = String(e).split("\n")[0]!.slice(0, 120)
    errors[text] = (errors[text] ?? 0) + 1
  }
  ms.push(performance.now() - start)
}

let k = 0
while (performance.now() < until) {
  const name = `mix-${id}-${k++}`
  await timed(() => run(Volume.builder(name).create()))
  await timed(() => run(Effect.flatMap(Volume.get(name), (vol) => vol.fs().write("f", data))))
  await timed(() => run(Effect.flatMap(Volume.get(name), (vol) => vol.fs().read("f"))))
  await timed(() => run(Volume.get(name)))
  await timed(() => run(Volume.list()))
  await timed(() => run(Volume.remove(name)))
}
await rt.dispose()
console.log(JSON.stringify({ ops: ms.length, ms, errors }))
