/**
 * The blinded human evaluation on the command line (src/eval/HumanEval.ts):
 *
 *   polaris human-eval export RUN --annotators a,b [--systems final,initial] [--samples N] [--store DIR]
 *   polaris human-eval import RUN FILE... [--store DIR]
 */
import { resolve } from "node:path"
import { Console, Effect } from "effect"
import { Argument, Command, Flag } from "effect/cli"
import * as HumanEval from "../eval/HumanEval.ts"
import { store } from "./flags.ts"

const run = Argument.String("run").pipe(Argument.withDescription("The run whose evaluated stories are compared"))
const pct = (x: number) => (Number.isFinite(x) ? `${(x * 100).toFixed(1)}%` : "n/a")
const rate = (r: HumanEval.Rate) => `${pct(r.rate)} [${pct(r.low)}, ${pct(r.high)}] (${r.wins}/${r.ties}/${r.losses} of ${r.pairs})`

const exportCommand = Command.make(
  "export",
  {
    run,
    store,
    annotators: Flag.String("annotators").pipe(Flag.withDescription("Annotator names, comma-separated: one page each")),
    systems: Flag.String("systems").pipe(Flag.withDescription("The two evaluated systems to compare, comma-separated"), Flag.withDefault("final,initial")),
    samples: Flag.Int("samples").pipe(Flag.withDescription("Stories per prompt and system"), Flag.withDefault(1))
  },
  (a) =>
    Effect.gen(function*() {
      const systems = a.systems.split(",").map((s) => s.trim())
      if (systems.length !== 2) return yield* new HumanEval.HumanEvalError({ message: `--systems takes two systems, got ${a.systems}` })
      const r = yield* HumanEval.exportPages(a.store, a.run, { annotators: a.annotators.split(",").map((s) => s.trim()).filter((s) => s !== ""), systems: [systems[0]!, systems[1]!], samples: a.samples })
      yield* Console.log(`${r.pairs} pairs, one page per annotator (send each only their own; keep key.json):`)
      for (const p of r.pages) yield* Console.log(`  ${p}`)
      yield* Console.log(`key: ${r.key}\nthen: polaris human-eval import ${a.run} ANSWERS.json... --store ${a.store}`)
    })
).pipe(Command.withDescription("Write a blinded annotation page per annotator: story pairs, order and sides drawn per annotator, no model names"))

const importCommand = Command.make(
  "import",
  {
    run,
    store,
    files: Argument.String("answers").pipe(Argument.withDescription("The answer files the pages exported"), Argument.atLeast(1))
  },
  (a) =>
    Effect.gen(function*() {
      const { result, file } = yield* HumanEval.importAnswers(a.store, a.run, a.files.map((f) => resolve(f)))
      const [x, y] = result.systems
      yield* Console.log(`win rate of ${x} against ${y} (ties half, 95% interval over prompts):`)
      for (const n of result.annotators) yield* Console.log(`  ${n.name}: ${rate(n.rate)}; agrees with the judge on ${pct(n.judgeAgreement)} (kappa ${n.judgeKappa.toFixed(2)})`)
      yield* Console.log(`  pooled: ${rate(result.pooled)}`)
      if (result.judge !== null) yield* Console.log(`  the judge: ${rate(result.judge)}`)
      for (const k of result.kappa) yield* Console.log(`agreement ${k.a} / ${k.b}: Cohen's kappa ${k.kappa.toFixed(2)} over ${k.pairs} pairs`)
      yield* Console.log(file)
    })
).pipe(Command.withDescription("Import annotators' answers: win rates with intervals, inter-annotator kappa, agreement with the judge; into the run report"))

export const humanEvalCommand = Command.make("human-eval").pipe(
  Command.withDescription("The blinded human evaluation of a run's stories"),
  Command.withSubcommands([exportCommand, importCommand])
)
