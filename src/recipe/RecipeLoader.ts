/**
 * Recipe loading: a recipe file, the files it `extends`, `--set` overrides and the environment,
 * turned into a validated {@link Recipe}, or into every problem found, each at `file:line:col`.
 *
 * Steps, in order; all problems of a step are reported together:
 * 1. YAML syntax of each file, and a mapping at its top level.
 * 2. `extends: base.yaml` (relative to the extending file, chains allowed): mappings are
 *    deep-merged, lists and scalars replaced, the extending file winning.
 * 3. `--set grpo.steps=20` overrides; the value is YAML, so `20` is a number and `[a,b]` a list.
 * 4. `${ENV_VAR}` values become Redacted secrets labelled with the variable's name. An unset (or
 *    empty) variable is a warning, not a problem: its secret is `Secret.unset(VAR)`, and a node
 *    whose engine needs it fails when it would run (src/dag/Secret.ts), so a recipe can be
 *    validated, and its cached results reused, without its secrets.
 * 5. Validation against the Recipe Schema, every issue at the node that was written: unknown
 *    keys with a did-you-mean, wrong values with the value found.
 *
 * Only secrets come from the environment, and `frozen` keeps them as `${VAR}`: written to a run
 * directory as JSON (which is YAML), it can be loaded again on resume with a fresh environment.
 *
 * @example
 * const { recipe, files } = yield* RecipeLoader.load("recipes/grpo.yaml", {
 *   sets: ["grpo.steps=20", "judge.backend=proxy"],
 *   env: process.env
 * })
 * // on failure: RecipeErrors, whose message reads
 * // recipes/grpo.yaml:12:3: grpo.stepz: unknown key "stepz"; did you mean "steps"?
 */
import { statSync } from "node:fs"
import { dirname, isAbsolute, relative, resolve } from "node:path"
import { Data, Effect, Schema } from "effect"
import { toProblems } from "./internal/issues.ts"
import { editorSchema } from "./internal/jsonSchema.ts"
import { applySet } from "./internal/overrides.ts"
import { resolveSecrets } from "./internal/secrets.ts"
import { formatPath, kindOf, type Location, type Mapping, merge, originAt, type Path, pathKey, type Problem, type Tree } from "./internal/tree.ts"
import { readYamlFile } from "./internal/yamlFile.ts"
import { Recipe } from "./Recipe.ts"

/** One problem with a recipe: where (`file:line:col`, or `--set ...`), the key path, and what. */
export interface RecipeError {
  readonly origin: string
  readonly path: string
  readonly message: string
}

/** Everything wrong with a recipe, sorted by file, line and column (`--set` problems last). */
export class RecipeErrors extends Data.TaggedError("RecipeErrors")<{ readonly errors: ReadonlyArray<RecipeError> }> {
  override get message() {
    return this.errors.map(formatError).join("\n")
  }
}

/** A loaded recipe. */
export interface Loaded {
  /** The validated recipe; secrets are Redacted, labelled with their variable's name. */
  readonly recipe: Recipe
  /** The recipe file and every file it extends, absolute, the recipe first (for watch mode). */
  readonly files: ReadonlyArray<string>
  /** The merged plain value, `--set`s applied, secrets still `${VAR}`: safe to store. */
  readonly frozen: unknown
  /** What loads but will fail later: each unset secret variable, at the value that names it. */
  readonly warnings: ReadonlyArray<RecipeError>
}

export interface LoadOptions {
  /** `--set` overrides, as `path.to.key=value`, applied in order after `extends`. */
  readonly sets?: ReadonlyArray<string> | undefined
  /** Where `${VAR}` secrets are read (default: `process.env`). */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Report an input the run reads that is not there (an embedded model, an anthology, `eqbench.dir`) at its line (the CLI does). */
  readonly checkInputs?: boolean | undefined
}

/**
 * Loads and validates a recipe.
 *
 * @example
 * const loaded = yield* RecipeLoader.load("recipe.yaml", { sets: ["seed=7"] })
 * loaded.recipe.seed // 7
 */
export const load = (file: string, options: LoadOptions = {}): Effect.Effect<Loaded, RecipeErrors> =>
  Effect.suspend(() => {
    const result = loadNow(resolve(file), options.sets ?? [], options.env ?? process.env, options.checkInputs ?? false)
    return "problems" in result ? Effect.fail(toErrors(result.problems, options.sets ?? [])) : Effect.succeed(result)
  })

/**
 * The recipe's JSON Schema (draft 2020-12), for editors: objects are closed, and secrets are
 * strings of the form `${ENV_VAR}`. `recipes/recipe.schema.json` holds a copy.
 *
 * @example
 * // first line of a recipe, for the YAML language server:
 * // # yaml-language-server: $schema=./recipe.schema.json
 */
export const jsonSchema = (): object =>
  editorSchema(Recipe, "polaris recipe", "A polaris recipe: a pipeline and its parameters, engines, retries and concurrency.")

/** `file:line:col: path: message`, the file relative to the working directory when inside it. */
export const formatError = (error: RecipeError): string =>
  `${displayOrigin(error.origin)}: ${error.path === "" ? "" : `${error.path}: `}${error.message}`

const displayOrigin = (origin: string): string => {
  if (origin.startsWith("--set ")) return origin
  const [, file = origin, position = ""] = /^(.*?)((?::\d+){2})?$/.exec(origin) ?? []
  const rel = relative(process.cwd(), file)
  return `${rel !== "" && !rel.startsWith("..") && !isAbsolute(rel) ? rel : file}${position}`
}

const originOf = (where: Location): string =>
  "set" in where ? `--set ${where.set}` : "line" in where ? `${where.file}:${where.line}:${where.col}` : where.file

/** File problems by file, line and column; `--set` problems after them, in argument order. */
const toErrors = (problems: ReadonlyArray<Problem>, sets: ReadonlyArray<string>): RecipeErrors => {
  const rank = (w: Location): [number, string, number, number] =>
    "set" in w ? [1, "", sets.indexOf(w.set), 0] : "line" in w ? [0, w.file, w.line, w.col] : [0, w.file, 0, 0]
  const sorted = [...problems].sort((a, b) => {
    const [x, y] = [rank(a.where), rank(b.where)]
    return x[0] - y[0] || (x[1] < y[1] ? -1 : x[1] > y[1] ? 1 : 0) || x[2] - y[2] || x[3] - y[3]
  })
  return new RecipeErrors({
    errors: sorted.map((p) => ({ origin: originOf(p.where), path: formatPath(p.path), message: p.message }))
  })
}

type Chain = { readonly tree: Tree; readonly files: ReadonlyArray<string> } | { readonly problems: ReadonlyArray<Problem> }

/** `file` merged over the files it extends; `stack` holds the files extending it. */
const readChain = (file: string, stack: ReadonlyArray<string>): Chain => {
  const own = readYamlFile(file)
  if (own.tree === undefined) return { problems: own.problems }
  if (own.extends === undefined) return { tree: own.tree, files: [file] }

  const { value, origin } = own.extends
  const fail = (message: string): Chain => ({ problems: [{ where: origin.value, path: ["extends"], message }] })
  if (typeof value !== "string" || value === "") return fail(`Expected a file path relative to this recipe, got ${kindOf(value)}`)
  const target = resolve(dirname(file), value)
  const chain = [...stack, file]
  if (chain.includes(target)) {
    const root = dirname(chain[0]!)
    return fail(`cycle: ${[...chain.slice(chain.indexOf(target)), target].map((f) => relative(root, f)).join(" -> ")}`)
  }
  const stat = statSync(target, { throwIfNoEntry: false })
  if (stat === undefined) return fail(`cannot extend "${value}": no such file`)
  if (!stat.isFile()) return fail(`cannot extend "${value}": not a file`)
  const base = readChain(target, chain)
  return "problems" in base ? base : { tree: merge(base.tree, own.tree), files: [file, ...base.files] }
}

/**
 * File paths in a recipe are relative to the file that wrote them (a `--set`: to the working
 * directory), so a recipe can extend one in another folder. They are made absolute here, which
 * also makes a frozen config independent of where `resume` runs. With `checkInputs`, the inputs
 * a run reads that are not there are returned as problems at their lines.
 */
const anchorPaths = (tree: Tree, checkInputs: boolean): Array<Problem> => {
  const problems: Array<Problem> = []
  const anchor = (path: Path, value: string, isPath: (v: string) => boolean, rewrite: (abs: (p: string) => string) => string) => {
    if (!isPath(value)) return
    const where = tree.origins.get(pathKey(path))?.value
    const base = where !== undefined && "file" in where ? dirname(where.file) : process.cwd()
    const anchored = rewrite((p) => (isAbsolute(p) ? p : resolve(base, p)))
    setAt(tree.value, path, anchored)
    return anchored
  }
  // Inputs a run reads: a missing one is reported at its line, not by the stage that opens it.
  const input = (path: Path, value: string, hint = "") => {
    const abs = anchor(path, value, () => true, (abs) => abs(value))!
    const where = originAt(tree, path)?.value
    if (checkInputs && where !== undefined && statSync(abs, { throwIfNoEntry: false }) === undefined) {
      problems.push({ where, path, message: `no such file or folder: ${abs}${hint}` })
    }
  }
  const value = tree.value
  if (typeof value.pipeline === "string") anchor(["pipeline"], value.pipeline, (v) => v.endsWith(".ts"), (abs) => abs(value.pipeline as string))
  const stages = Array.isArray(value.stages) ? value.stages : []
  stages.forEach((stage, i) => {
    const uses = (stage as Mapping | null)?.uses
    if (typeof uses === "string" && uses.includes("#")) {
      anchor(["stages", i, "uses"], uses, () => true, (abs) => `${abs(uses.slice(0, uses.lastIndexOf("#")))}${uses.slice(uses.lastIndexOf("#"))}`)
    }
  })
  // The policy, and each evaluated system's: an embedded model folder, a remote model's tokenizer.
  const policyPaths = (policy: Mapping | undefined, at: Path) => {
    const model = policy?.model
    if (policy?.backend === "embedded" && typeof model === "string") input([...at, "model"], model)
    // A tokenizer is a folder or a Hugging Face model id (`Qwen/Qwen3.5-9B`, model/HubCache.ts): only
    // what is written as a path, or names an existing folder next to the recipe, is a path.
    const tokenizer = policy?.tokenizer
    if (typeof tokenizer === "string" && !tokenizer.startsWith("~")) {
      anchor([...at, "tokenizer"], tokenizer, () => true, (abs) =>
        tokenizer.startsWith(".") || tokenizer.startsWith("/") || statSync(abs(tokenizer), { throwIfNoEntry: false }) !== undefined ? abs(tokenizer) : tokenizer)
    }
    const adapterDir = policy?.adapter_dir
    if (typeof adapterDir === "string") anchor([...at, "adapter_dir"], adapterDir, () => true, (abs) => abs(adapterDir))
  }
  policyPaths(value.policy as Mapping | undefined, ["policy"])
  const systems = (value.eval as Mapping | undefined)?.systems
  if (Array.isArray(systems)) systems.forEach((s, i) => policyPaths((s as Mapping | null)?.policy as Mapping | undefined, ["eval", "systems", i, "policy"]))
  const rubric = (value.judge as Mapping | undefined)?.rubric
  if (typeof rubric === "string") anchor(["judge", "rubric"], rubric, (v) => /\.ya?ml$/.test(v), (abs) => abs(rubric))
  const output = (value.pretrain as Mapping | undefined)?.output
  if (typeof output === "string") anchor(["pretrain", "output"], output, () => true, (abs) => abs(output))
  const tensorboardDir = ((value.trackers as Mapping | undefined)?.tensorboard as Mapping | undefined)?.dir
  if (typeof tensorboardDir === "string") anchor(["trackers", "tensorboard", "dir"], tensorboardDir, () => true, (abs) => abs(tensorboardDir))
  const eqbenchDir = (value.eqbench as Mapping | undefined)?.dir
  if (typeof eqbenchDir === "string") input(["eqbench", "dir"], eqbenchDir, " (a copy of the benchmark's data/ folder: docs/evaluation.md, \"EQ-Bench\")")
  const data = value.data as Mapping | undefined
  const anthologies = Array.isArray(data?.anthologies) ? data.anthologies : []
  anthologies.forEach((a, i) => {
    if (typeof a === "string") input(["data", "anthologies", i], a)
  })
  return problems
}

const setAt = (root: Mapping, path: Path, value: unknown) => {
  let node: any = root
  for (const key of path.slice(0, -1)) node = node[key]
  node[path.at(-1)!] = value
}

const standard = Schema.toStandardSchemaV1(Recipe, { parseOptions: { errors: "all", onExcessProperty: "error" } })["~standard"]

const loadNow = (
  file: string,
  sets: ReadonlyArray<string>,
  env: Readonly<Record<string, string | undefined>>,
  checkInputs: boolean
): Loaded | { readonly problems: ReadonlyArray<Problem> } => {
  const chain = readChain(file, [])
  if ("problems" in chain) return chain
  const { tree, files } = chain

  const problems: Array<Problem> = []
  for (const set of sets) {
    const problem = applySet(tree, set)
    if (problem !== undefined) problems.push(problem)
  }
  problems.push(...anchorPaths(tree, checkInputs))
  const secrets = resolveSecrets(tree, env)
  problems.push(...secrets.problems)

  const result = standard.validate(secrets.value)
  if (result instanceof Promise) throw new Error("the Recipe Schema must validate synchronously")
  // A value already reported (a malformed reference, say) is not reported again by the Schema.
  const reported = secrets.problems.map((p) => p.path)
  const within = (path: Path, prefix: Path) => prefix.every((p, i) => String(path[i]) === String(p))
  for (const problem of toProblems(result.issues ?? [], tree, secrets.value, Recipe.ast)) {
    if (!reported.some((r) => within(problem.path, r))) problems.push(problem)
  }
  if (result.issues === undefined) problems.push(...crossFieldProblems(result.value, tree))
  if (problems.length > 0 || result.issues !== undefined) return { problems }
  return { recipe: result.value, files, frozen: tree.value, warnings: toErrors(secrets.warnings, sets).errors }
}

/**
 * Rules across sections, checked once the Schema passed, each reported at the value that breaks
 * it (`file:line:col`, or its `--set`).
 *
 * - `grpo.beta > 0` with `policy.flavour: skyrl` (a tinker or vllm policy): SkyRL tx's JAX backend
 *   divides each datum's loss by max(Σweights, 1e-9) (NovaSky-AI/SkyRL@a9564572 `skyrl/backends/jax.py`,
 *   `per_seq_loss`), and the k3 KL term goes out as cross_entropy weights of both signs summing to
 *   about 0 (stages/update.ts), so its gradient would be scaled by up to 1e9 or the update refused
 *   mid-run. Scaling the weights cannot undo that division, and the PPO term cannot carry the KL
 *   gradient (its clipped tokens pass none), so the combination is refused here.
 * - `grpo.off_policy_steps ≥ 1` with `policy.backend: vllm`: an older policy is sampled while a
 *   newer one is published, and the vLLM sampler here serves one adapter at a time
 *   (engines/Policies.ts `withVllmSampling`), so the lagged samples would come from the wrong
 *   weights. Tinker and the embedded engine name sampler weights per call.
 */
const crossFieldProblems = (recipe: Recipe, tree: Tree): Array<Problem> => {
  const problems: Array<Problem> = []
  const beta = recipe.grpo?.beta ?? 0
  const policy = recipe.policy
  if (beta > 0 && policy?.flavour === "skyrl" && policy.backend !== "embedded") {
    const flavourAt = originAt(tree, ["policy", "flavour"])?.value
    problems.push({
      where: originAt(tree, ["grpo", "beta"])!.value,
      path: ["grpo", "beta"],
      message: `a KL term (beta ${beta}) cannot be trained on SkyRL tx (policy.flavour: skyrl${flavourAt === undefined ? "" : ` at ${displayOrigin(originOf(flavourAt))}`}): ` +
        `it divides each cross_entropy datum by max(sum of weights, 1e-9), and the KL weights sum to about 0; use beta: 0 there, or hosted Tinker`
    })
  }
  const lag = recipe.grpo?.off_policy_steps ?? 0
  if (lag > 0 && policy?.backend === "vllm") {
    problems.push({
      where: originAt(tree, ["grpo", "off_policy_steps"])!.value,
      path: ["grpo", "off_policy_steps"],
      message: `off_policy_steps ${lag} needs a sampler that serves an older policy while a newer one is published; ` +
        `the vllm backend serves one adapter at a time: use 0 there, or backend tinker (sampler weights are named per call)`
    })
  }
  return problems
}
