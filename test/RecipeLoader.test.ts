/**
 * Recipe loading: every malformed recipe is reported at the exact `file:line:col` (or `--set`)
 * with a message for people; valid recipes merge `extends`, apply `--set` and read secrets.
 */
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve, sep } from "node:path"
import { Effect, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import * as RecipeLoader from "../src/recipe/RecipeLoader.ts"
import { readYamlFile } from "../src/recipe/internal/yamlFile.ts"
import * as Secret from "../src/dag/Secret.ts"
import { schemaFile, schemaText } from "../src/recipe/writeSchema.ts"

/** Writes `files` (relative names) into a fresh temp dir and returns it. */
const scratch = (files: Readonly<Record<string, string>>): string => {
  const dir = mkdtempSync(join(tmpdir(), "polaris-recipe-"))
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, name)), { recursive: true })
    writeFileSync(join(dir, name), text)
  }
  return dir
}

const loadIn = (dir: string, options: RecipeLoader.LoadOptions = {}, file = "recipe.yaml") =>
  Effect.runPromise(Effect.result(RecipeLoader.load(join(dir, file), { env: {}, ...options })))

/** Loads `recipe.yaml` from `files`, expecting success. */
const loadOk = async (files: Readonly<Record<string, string>>, options: RecipeLoader.LoadOptions = {}) => {
  const dir = scratch(files)
  const result = await loadIn(dir, options)
  if (result._tag === "Failure") throw new Error(`expected a valid recipe, got:\n${result.failure.message}`)
  return { dir, ...result.success }
}

/** Loads `recipe.yaml` from `files`, expecting failure; the error and its lines, paths relative to the temp dir. */
const loadFail = async (files: Readonly<Record<string, string>>, options: RecipeLoader.LoadOptions = {}) => {
  const dir = scratch(files)
  const result = await loadIn(dir, options)
  if (result._tag === "Success") throw new Error("expected the recipe to be rejected")
  const error = result.failure
  return { dir, error, lines: error.message.split("\n").map((line) => line.split(`${dir}${sep}`).join("")) }
}

interface Case {
  readonly name: string
  /** Files by name; `recipe.yaml` is the one loaded. */
  readonly files: Readonly<Record<string, string>>
  readonly sets?: ReadonlyArray<string>
  readonly env?: Readonly<Record<string, string>>
  /** The exact lines of the error message. */
  readonly errors: ReadonlyArray<string>
}

const P = "pipeline: grpo\n"

const cases: ReadonlyArray<Case> = [
  // YAML syntax
  { name: "syntax: mapping items at different columns", files: { "recipe.yaml": P + "grpo:\n    steps: 1\n  beta: 0.1\n" },
    errors: ["recipe.yaml:4:1: All mapping items must start at the same column"] },
  { name: "syntax: key indented deeper than its sibling", files: { "recipe.yaml": P + "grpo:\n  steps: 1\n   beta: 0.1\n" },
    errors: ["recipe.yaml:3:10: a mapping cannot start inside this value; put each key on its own line, indented like its siblings"] },
  { name: "syntax: mapping inside a one-line value", files: { "recipe.yaml": P + "seed: a: b\n" },
    errors: ["recipe.yaml:2:7: a mapping cannot start inside this value; put each key on its own line, indented like its siblings"] },
  { name: "syntax: list items at different columns", files: { "recipe.yaml": P + "data:\n  anthologies:\n   - a\n  - b\n" },
    errors: [
      "recipe.yaml:5:1: A block sequence may not be used as an implicit map key",
      "recipe.yaml:5:3: Implicit keys need to be on a single line"
    ] },
  { name: "syntax: unclosed double quote", files: { "recipe.yaml": "pipeline: \"grpo\nseed: 1\n" },
    errors: ["recipe.yaml:1:11: unclosed \" quote"] },
  { name: "syntax: unclosed single quote", files: { "recipe.yaml": P + "store: '.polaris\nseed: 1\n" },
    errors: ["recipe.yaml:2:8: unclosed ' quote"] },
  { name: "syntax: unclosed flow sequence", files: { "recipe.yaml": P + "data:\n  anthologies: [a, b\nseed: 1\n" },
    errors: ["recipe.yaml:3:16: unclosed flow sequence (no closing ])"] },
  { name: "syntax: unclosed flow mapping", files: { "recipe.yaml": P + "grpo: {steps: 1, beta: 0.1\n" },
    errors: ["recipe.yaml:2:7: unclosed flow map (no closing })"] },
  { name: "syntax: duplicate key", files: { "recipe.yaml": P + "seed: 1\nseed: 2\n" },
    errors: ["recipe.yaml:3:1: duplicate key \"seed\""] },
  { name: "syntax: duplicate nested key", files: { "recipe.yaml": P + "grpo:\n  steps: 1\n  beta: 0\n  steps: 2\n" },
    errors: ["recipe.yaml:5:3: duplicate key \"steps\""] },
  { name: "syntax: tab indentation", files: { "recipe.yaml": P + "grpo:\n\tsteps: 1\n" },
    errors: ["recipe.yaml:3:1: Tabs are not allowed as indentation"] },
  { name: "syntax: several errors at once", files: { "recipe.yaml": P + "seed: 1\nseed: 2\ngrpo:\n\tsteps: 1\n" },
    errors: [
      "recipe.yaml:3:1: duplicate key \"seed\"",
      "recipe.yaml:5:1: Tabs are not allowed as indentation"
    ] },
  { name: "syntax: key without colon", files: { "recipe.yaml": P + "seed 1\nstore: x\n" },
    errors: ["recipe.yaml:2:1: Implicit keys need to be on a single line"] },
  { name: "syntax: invalid escape", files: { "recipe.yaml": P + "store: \"a\\qb\"\n" },
    errors: ["recipe.yaml:2:10: Invalid escape sequence \\q"] },
  { name: "syntax: two documents", files: { "recipe.yaml": P + "---\nseed: 1\n" },
    errors: ["recipe.yaml:2:1: a recipe is one YAML document; remove the `---` separator"] },
  { name: "syntax: unknown alias", files: { "recipe.yaml": P + "store: *nowhere\n" },
    errors: ["recipe.yaml:2:8: store: unknown alias *nowhere"] },
  { name: "syntax: alias inside its own anchor", files: { "recipe.yaml": P + "params: &p\n  self: *p\n" },
    errors: ["recipe.yaml:3:9: params.self: alias *p refers to a node that contains it"] },
  { name: "unknown key: __proto__ is data, not a prototype", files: { "recipe.yaml": P + "grpo:\n  __proto__: { steps: 1 }\n" },
    errors: ["recipe.yaml:3:3: grpo.__proto__: unknown key \"__proto__\"; expected one of: steps, groups_per_step, group_size, loss_type, scale_rewards, reference_in_stats, reference_loss, luffy_gamma, epsilon_low, epsilon_high, beta, learning_rate, weight_decay, max_grad_norm, inner_iterations, mismatch_correction, off_policy_steps, truncated"] },
  { name: "syntax: complex key", files: { "recipe.yaml": P + "? [a, b]\n: 1\n" },
    errors: ["recipe.yaml:2:3: mapping keys must be plain scalars"] },
  { name: "top level: a list", files: { "recipe.yaml": "- pipeline: grpo\n" },
    errors: ["recipe.yaml:1:1: a recipe must be a mapping of keys to values, got a list"] },
  { name: "top level: a scalar", files: { "recipe.yaml": "# a recipe\ngrpo\n" },
    errors: ["recipe.yaml:2:1: a recipe must be a mapping of keys to values, got a string"] },
  { name: "top level: empty file", files: { "recipe.yaml": "# nothing here\n" },
    errors: ["recipe.yaml:1:1: a recipe must be a mapping of keys to values, got an empty file"] },
  // wrong types
  { name: "type: pipeline is a number", files: { "recipe.yaml": "pipeline: 3\n" },
    errors: ["recipe.yaml:1:11: pipeline: Expected a string, got 3"] },
  { name: "type: string for an integer", files: { "recipe.yaml": P + "grpo:\n  steps: abc\n" },
    errors: ["recipe.yaml:3:10: grpo.steps: Expected an integer, got \"abc\""] },
  { name: "type: fraction for an integer", files: { "recipe.yaml": P + "seed: 1.5\n" },
    errors: ["recipe.yaml:2:7: seed: Expected an integer, got 1.5"] },
  { name: "type: scalar for a list", files: { "recipe.yaml": P + "data:\n  anthologies: stories/\n" },
    errors: ["recipe.yaml:3:16: data.anthologies: Expected a list, got \"stories/\""] },
  { name: "type: list for a mapping", files: { "recipe.yaml": P + "grpo:\n  - steps: 1\n" },
    errors: ["recipe.yaml:3:3: grpo: Expected a mapping, got a list"] },
  { name: "type: string for a boolean", files: { "recipe.yaml": P + "sampling:\n  thinking: \"yes\"\n" },
    errors: ["recipe.yaml:3:13: sampling.thinking: Expected true or false, got \"yes\""] },
  { name: "type: empty value", files: { "recipe.yaml": P + "grpo:\n  steps:\n  beta: 0.1\n" },
    errors: ["recipe.yaml:3:3: grpo.steps: Expected an integer, got nothing"] },
  { name: "type: plain string for a secret", files: { "recipe.yaml": P + "judge:\n  backend: gemini\n  api_key: sk-live-123\n" },
    errors: ["recipe.yaml:4:12: judge.api_key: Expected a secret written as \"${ENV_VAR}\", got a plain string (secrets are never written in recipes)"] },
  { name: "type: string for a list item", files: { "recipe.yaml": P + "data:\n  buckets:\n    edges: [0, 1000, lots]\n" },
    errors: ["recipe.yaml:4:22: data.buckets.edges[2]: Expected a number, got \"lots\""] },
  // out of range
  { name: "range: zero steps", files: { "recipe.yaml": P + "grpo:\n  steps: 0\n" },
    errors: ["recipe.yaml:3:10: grpo.steps: Expected a value greater than 0, got 0"] },
  { name: "range: group of one", files: { "recipe.yaml": P + "grpo:\n  group_size: 1\n" },
    errors: ["recipe.yaml:3:15: grpo.group_size: Expected a value greater than or equal to 2, got 1"] },
  { name: "range: fraction above 1", files: { "recipe.yaml": P + "data:\n  heldout_fraction: 1.5\n" },
    errors: ["recipe.yaml:3:21: data.heldout_fraction: Expected a value between 0 and 1, got 1.5"] },
  { name: "range: negative temperature", files: { "recipe.yaml": P + "sampling: { temperature: -0.5 }\n" },
    errors: ["recipe.yaml:2:26: sampling.temperature: Expected a value greater than or equal to 0, got -0.5"] },
  { name: "range: not a number", files: { "recipe.yaml": P + "grpo:\n  learning_rate: .nan\n" },
    errors: ["recipe.yaml:3:18: grpo.learning_rate: Expected a finite number, got NaN"] },
  { name: "range: record value", files: { "recipe.yaml": P + "concurrency:\n  cpu: 4\n  judge: 0\n" },
    errors: ["recipe.yaml:4:10: concurrency.judge: Expected a value greater than 0, got 0"] },
  { name: "range: pattern", files: { "recipe.yaml": P + "stages:\n  - uses: ./stage.js\n    after: judge\n" },
    errors: ["recipe.yaml:3:11: stages[0].uses: Expected a string matching the RegExp ^[^#]+\\.ts#[A-Za-z_$][\\w$]*$, got \"./stage.js\""] },
  // literals
  { name: "literal: misspelt backend", files: { "recipe.yaml": P + "judge:\n  backend: gemni\n" },
    errors: ["recipe.yaml:3:12: judge.backend: Expected \"proxy\" | \"gemini\" | \"openai\" | \"simulated\", got \"gemni\"; did you mean \"gemini\"?"] },
  { name: "literal: unknown loss type", files: { "recipe.yaml": P + "grpo:\n  loss_type: ppo\n" },
    errors: ["recipe.yaml:3:14: grpo.loss_type: Expected \"grpo\" | \"bnpo\" | \"dapo\" | \"dr_grpo\", got \"ppo\""] },
  { name: "literal: wrong case", files: { "recipe.yaml": P + "data:\n  prompt:\n    mode: Full\n" },
    errors: ["recipe.yaml:4:11: data.prompt.mode: Expected \"full\" | \"excerpt\", got \"Full\"; did you mean \"full\"?"] },
  // unknown keys
  { name: "unknown key: top level", files: { "recipe.yaml": P + "seeds: 3\n" },
    errors: ["recipe.yaml:2:1: seeds: unknown key \"seeds\"; did you mean \"seed\"?"] },
  { name: "unknown key: section", files: { "recipe.yaml": P + "grpo:\n  stepz: 3\n" },
    errors: ["recipe.yaml:3:3: grpo.stepz: unknown key \"stepz\"; did you mean \"steps\"?"] },
  { name: "unknown key: nested, by prefix", files: { "recipe.yaml": P + "data:\n  prompt:\n    round: 100\n" },
    errors: ["recipe.yaml:4:5: data.prompt.round: unknown key \"round\"; did you mean \"round_to\"?"] },
  { name: "unknown key: in a list item", files: { "recipe.yaml": P + "eval:\n  buckets:\n    - { nme: short, min_words: 0, max_words: 10 }\n" },
    errors: ["recipe.yaml:4:9: eval.buckets[0].nme: unknown key \"nme\"; did you mean \"name\"?"] },
  { name: "unknown key: inside a record entry", files: { "recipe.yaml": P + "retries:\n  judge:\n    max_attempts: 5\n" },
    errors: ["recipe.yaml:4:5: retries.judge.max_attempts: unknown key \"max_attempts\"; expected one of: attempts, base_ms, cap_ms"] },
  { name: "unknown key: nothing close", files: { "recipe.yaml": P + "grpo:\n  zzz: 1\n" },
    errors: ["recipe.yaml:3:3: grpo.zzz: unknown key \"zzz\"; expected one of: steps, groups_per_step, group_size, loss_type, scale_rewards, reference_in_stats, reference_loss, luffy_gamma, epsilon_low, epsilon_high, beta, learning_rate, weight_decay, max_grad_norm, inner_iterations, mismatch_correction, off_policy_steps, truncated"] },
  // missing keys
  { name: "missing: pipeline", files: { "recipe.yaml": "seed: 1\n" },
    errors: ["recipe.yaml:1:1: pipeline: required key is missing (A built-in pipeline name, or a path to a .ts pipeline file)"] },
  { name: "missing: nested required key", files: { "recipe.yaml": P + "judge:\n  model: gemini-2.5\n" },
    errors: ["recipe.yaml:3:3: judge.backend: required key is missing (one of \"proxy\", \"gemini\", \"openai\", \"simulated\")"] },
  { name: "missing: in a list item", files: { "recipe.yaml": P + "eval:\n  buckets:\n    - name: short\n      min_words: 0\n" },
    errors: ["recipe.yaml:4:7: eval.buckets[0].max_words: required key is missing"] },
  // extends
  { name: "extends: missing file", files: { "recipe.yaml": "extends: base.yaml\n" + P },
    errors: ["recipe.yaml:1:10: extends: cannot extend \"base.yaml\": no such file"] },
  { name: "extends: cycle", files: { "recipe.yaml": "extends: a.yaml\n" + P, "a.yaml": "extends: recipe.yaml\n" },
    errors: ["a.yaml:1:10: extends: cycle: recipe.yaml -> a.yaml -> recipe.yaml"] },
  { name: "extends: itself", files: { "recipe.yaml": P + "extends: ./recipe.yaml\n" },
    errors: ["recipe.yaml:2:10: extends: cycle: recipe.yaml -> recipe.yaml"] },
  { name: "extends: not a string", files: { "recipe.yaml": P + "extends: [a.yaml, b.yaml]\n" },
    errors: ["recipe.yaml:2:10: extends: Expected a file path relative to this recipe, got a list"] },
  { name: "extends: a folder", files: { "recipe.yaml": P + "extends: sub\n", "sub/x.yaml": P },
    errors: ["recipe.yaml:2:10: extends: cannot extend \"sub\": not a file"] },
  { name: "extends: syntax error in the base", files: { "recipe.yaml": "extends: base.yaml\n" + P, "base.yaml": "seed: 1\nseed: 2\n" },
    errors: ["base.yaml:2:1: duplicate key \"seed\""] },
  { name: "extends: missing file deeper in the chain", files: { "recipe.yaml": "extends: shared/mid.yaml\n", "shared/mid.yaml": P + "extends: ../gone.yaml\n" },
    errors: ["shared/mid.yaml:2:10: extends: cannot extend \"../gone.yaml\": no such file"] },
  // environment
  { name: "env: reference inside text", files: { "recipe.yaml": P + "judge:\n  backend: openai\n  base_url: https://${HOST}/v1\n" }, env: { HOST: "h" },
    errors: ["recipe.yaml:4:13: judge.base_url: \"${HOST}\" must be the whole value; secrets are never part of a text"] },
  { name: "env: lower-case name", files: { "recipe.yaml": P + "policy:\n  backend: tinker\n  model: m\n  api_key: ${tinker_key}\n" },
    errors: ["recipe.yaml:5:12: policy.api_key: \"${tinker_key}\" is not an environment variable reference; names are upper-case letters, digits and _"] },
  { name: "env: secret where a string is expected", files: { "recipe.yaml": P + "judge:\n  backend: gemini\n  model: ${MODEL}\n" }, env: { MODEL: "m" },
    errors: ["recipe.yaml:4:10: judge.model: Expected a string, got a secret (${MODEL}); only secrets are read from the environment"] },
  // --set
  { name: "set: no =", files: { "recipe.yaml": P }, sets: ["grpo.steps"],
    errors: ["--set grpo.steps: expected PATH=VALUE, e.g. --set grpo.steps=20"] },
  { name: "set: empty path", files: { "recipe.yaml": P }, sets: ["=3"],
    errors: ["--set =3: expected PATH=VALUE with a dotted path such as grpo.steps, got \"\""] },
  { name: "set: empty segment", files: { "recipe.yaml": P }, sets: ["grpo..steps=3"],
    errors: ["--set grpo..steps=3: expected PATH=VALUE with a dotted path such as grpo.steps, got \"grpo..steps\""] },
  { name: "set: bad value type", files: { "recipe.yaml": P }, sets: ["grpo.steps=abc"],
    errors: ["--set grpo.steps=abc: grpo.steps: Expected an integer, got \"abc\""] },
  { name: "set: unknown key", files: { "recipe.yaml": P + "grpo:\n  steps: 1\n" }, sets: ["grpo.stepz=3"],
    errors: ["--set grpo.stepz=3: grpo.stepz: unknown key \"stepz\"; did you mean \"steps\"?"] },
  { name: "set: unknown section", files: { "recipe.yaml": P }, sets: ["grpoo.steps=3"],
    errors: ["--set grpoo.steps=3: grpoo: unknown key \"grpoo\"; did you mean \"grpo\"?"] },
  { name: "set: into a scalar", files: { "recipe.yaml": P + "seed: 1\n" }, sets: ["seed.value=3"],
    errors: ["--set seed.value=3: seed: cannot set \"value\" inside a number"] },
  { name: "set: malformed YAML value", files: { "recipe.yaml": P }, sets: ["data.anthologies=[a, b"],
    errors: ["--set data.anthologies=[a, b: data.anthologies: the value is not valid YAML: Flow sequence must end with a ]"] },
  { name: "set: misspelt literal", files: { "recipe.yaml": P }, sets: ["judge.backend=gemni"],
    errors: ["--set judge.backend=gemni: judge.backend: Expected \"proxy\" | \"gemini\" | \"openai\" | \"simulated\", got \"gemni\"; did you mean \"gemini\"?"] },
]

describe("RecipeLoader: malformed recipes", () => {
  it("has a table of at least 40 cases", () => {
    expect(cases.length).toBeGreaterThanOrEqual(40)
  })

  it.each(cases)("$name", async ({ files, sets, env, errors }) => {
    const { error, lines } = await loadFail(files, { sets: sets ?? [], env: env ?? {} })
    expect(lines).toEqual(errors)
    expect(error._tag).toBe("RecipeErrors")
    expect(error.errors).toHaveLength(errors.length)
    expect(error.message).not.toContain("\n    at ")
    for (const e of error.errors) expect(e.message).not.toContain("\n    at ")
  })
})

describe("RecipeLoader: extends", () => {
  const base = [
    "pipeline: grpo", //               1
    "seed: 1", //                      2
    "data:", //                        3
    "  anthologies: [a.txt, b.txt]", // 4
    "  min_words: 100", //             5
    "grpo:", //                        6
    "  steps: 10", //                  7
    "  beta: 0.04", //                 8
    ""
  ].join("\n")

  it("deep-merges mappings, replaces lists, and lets the child win", async () => {
    const { dir, recipe, files, frozen } = await loadOk({
      "base.yaml": base,
      "recipe.yaml": "extends: base.yaml\ndata:\n  anthologies: [c.txt]\ngrpo:\n  steps: 20\n"
    })
    expect(recipe.seed).toBe(1)
    expect(recipe.data).toEqual({ anthologies: [join(dir, "c.txt")], min_words: 100 })
    expect(recipe.grpo).toEqual({ steps: 20, beta: 0.04 })
    expect(files).toEqual([join(dir, "recipe.yaml"), join(dir, "base.yaml")])
    expect(frozen).not.toHaveProperty("extends")
    expect(frozen).toEqual({ pipeline: "grpo", seed: 1, data: { anthologies: [join(dir, "c.txt")], min_words: 100 }, grpo: { steps: 20, beta: 0.04 } })
  })

  it("follows a chain, each path relative to the file that extends", async () => {
    const { dir, recipe, files } = await loadOk({
      "base.yaml": base,
      "shared/mid.yaml": "extends: ../base.yaml\nseed: 2\ngrpo:\n  beta: 0\n",
      "recipe.yaml": "extends: shared/mid.yaml\nseed: 3\n"
    })
    expect(recipe.seed).toBe(3)
    expect(recipe.grpo).toEqual({ steps: 10, beta: 0 })
    expect(files).toEqual([join(dir, "recipe.yaml"), join(dir, "shared", "mid.yaml"), join(dir, "base.yaml")])
  })

  it("anchors model folders: pretrain.output, and policy.model of the embedded backend only", async () => {
    const { dir, recipe } = await loadOk({
      "shared/base.yaml": "pipeline: pretrain\npretrain:\n  output: ../models/m\npolicy:\n  backend: embedded\n  model: models/story-1m\n",
      "recipe.yaml": "extends: shared/base.yaml\n"
    })
    expect(recipe.pretrain?.output).toBe(join(dir, "models", "m"))
    expect(recipe.policy?.model).toBe(join(dir, "shared", "models", "story-1m"))
    const remote = await loadOk({ "recipe.yaml": "pipeline: grpo\npolicy:\n  backend: tinker\n  model: Qwen/Qwen3-8B\n" })
    expect(remote.recipe.policy?.model).toBe("Qwen/Qwen3-8B")
  })

  it("with checkInputs, reports an input that is not there at its line; a remote model is no input", async () => {
    const files = {
      "recipe.yaml": "pipeline: eqbench\npolicy:\n  backend: embedded\n  model: models/gone\neqbench:\n  dir: ./data\ndata:\n  anthologies: [a.txt]\n",
      "a.txt": "x"
    }
    const { lines } = await loadFail(files, { checkInputs: true })
    expect(lines).toEqual([
      expect.stringMatching(/^recipe\.yaml:4:10: policy\.model: no such file or folder: .*models[\\/]gone$/),
      expect.stringMatching(/^recipe\.yaml:6:8: eqbench\.dir: no such file or folder: .*data \(a copy of the benchmark's data\/ folder/)
    ])
    await loadOk(files)
    await loadOk({ "recipe.yaml": "pipeline: grpo\npolicy:\n  backend: tinker\n  model: Qwen/Qwen3-8B\n" }, { checkInputs: true })
  })

  it("points an error in the base file into the base file", async () => {
    const { lines, error, dir } = await loadFail({
      "base.yaml": base.replace("steps: 10", "steps: ten"),
      "recipe.yaml": "extends: base.yaml\ngrpo:\n  beta: -1\n"
    })
    expect(lines).toEqual([
      "base.yaml:7:10: grpo.steps: Expected an integer, got \"ten\"",
      "recipe.yaml:3:9: grpo.beta: Expected a value greater than or equal to 0, got -1"
    ])
    expect(error.errors[0]).toEqual({ origin: `${join(dir, "base.yaml")}:7:10`, path: "grpo.steps", message: "Expected an integer, got \"ten\"" })
  })

  it("points into the file that wrote each value after a merge; a replaced list is the child's", async () => {
    const { lines } = await loadFail({
      "base.yaml": "pipeline: grpo\njudge:\n  backend: proxy\n  temperature: -1\neval:\n  buckets:\n    - { name: a, min_words: 0, max_words: 10 }\n",
      "recipe.yaml": "extends: base.yaml\njudge:\n  model: m\neval:\n  buckets:\n    - { name: b, min_words: 0 }\n"
    })
    expect(lines).toEqual([
      "base.yaml:4:16: judge.temperature: Expected a value greater than or equal to 0, got -1",
      "recipe.yaml:6:7: eval.buckets[0].max_words: required key is missing"
    ])
  })
})

describe("RecipeLoader: --set", () => {
  it("parses values as YAML: numbers, strings, lists, booleans", async () => {
    const { recipe, frozen } = await loadOk({ "recipe.yaml": "pipeline: grpo\njudge:\n  backend: gemini\n" }, {
      sets: ["grpo.steps=20", "judge.backend=proxy", "data.anthologies=[a, b]", "sampling.thinking=true", "sampling.top_p= 0.9"]
    })
    expect(recipe.grpo?.steps).toBe(20)
    expect(recipe.judge?.backend).toBe("proxy")
    expect(recipe.data?.anthologies).toEqual([resolve("a"), resolve("b")]) // paths from --set are relative to the working directory
    expect(recipe.sampling).toEqual({ thinking: true, top_p: 0.9 })
    expect(frozen).toMatchObject({ grpo: { steps: 20 }, judge: { backend: "proxy" } })
  })

  it("resolves file paths against the file that wrote them, across folders", async () => {
    const { recipe } = await loadOk({
      "shared/base.yaml": "pipeline: ./pipe.ts\nstages:\n  - { uses: ./stages.ts#x, after: a }\ndata:\n  anthologies: [books]\n",
      "recipe.yaml": "extends: shared/base.yaml\n"
    })
    expect(recipe.pipeline).toMatch(/\/shared\/pipe\.ts$/)
    expect(recipe.stages?.[0]?.uses).toMatch(/\/shared\/stages\.ts#x$/)
    expect(recipe.data?.anthologies?.[0]).toMatch(/\/shared\/books$/)
  })

  it("applies after extends, in order, and can address list items by index", async () => {
    const { recipe } = await loadOk({
      "base.yaml": "pipeline: grpo\nseed: 1\nstages:\n  - { uses: ./s.ts#score, after: judge }\n",
      "recipe.yaml": "extends: base.yaml\nseed: 2\n"
    }, { sets: ["seed=3", "seed=4", "stages.0.id=my-score"] })
    expect(recipe.seed).toBe(4)
    expect(recipe.stages).toEqual([{ uses: expect.stringMatching(/^\/.*\/s\.ts#score$/), after: "judge", id: "my-score" }])
  })

  it("can give a secret as ${VAR}", async () => {
    const { recipe } = await loadOk({ "recipe.yaml": "pipeline: grpo\njudge:\n  backend: gemini\n" }, {
      sets: ["judge.api_key=${GEMINI_API_KEY}"],
      env: { GEMINI_API_KEY: "sk-from-env" }
    })
    expect(Redacted.value(recipe.judge!.api_key!)).toBe("sk-from-env")
  })
})

describe("RecipeLoader: secrets", () => {
  const files = { "recipe.yaml": "pipeline: grpo\njudge:\n  backend: gemini\n  api_key: ${GEMINI_API_KEY}\npolicy:\n  backend: tinker\n  model: qwen\n  api_key: ${TINKER_API_KEY}\n" }
  const env = { GEMINI_API_KEY: "sk-gemini-SECRET", TINKER_API_KEY: "tk-SECRET" }

  it("reads ${VAR} into a Redacted labelled with the variable", async () => {
    const { recipe } = await loadOk(files, { env })
    const key = recipe.judge!.api_key!
    expect(Redacted.isRedacted(key)).toBe(true)
    expect(key.label).toBe("GEMINI_API_KEY")
    expect(Redacted.value(key)).toBe("sk-gemini-SECRET")
    expect(String(key)).not.toContain("SECRET")
    expect(Redacted.value(recipe.policy!.api_key!)).toBe("tk-SECRET")
  })

  it("keeps ${VAR} in `frozen`, which reloads with a fresh environment", async () => {
    const { dir, recipe, frozen } = await loadOk(files, { env })
    expect(frozen).toMatchObject({ judge: { api_key: "${GEMINI_API_KEY}" }, policy: { api_key: "${TINKER_API_KEY}" } })
    expect(JSON.stringify(frozen)).not.toContain("SECRET")
    writeFileSync(join(dir, "frozen.json"), JSON.stringify(frozen))
    const again = await loadIn(dir, { env: { GEMINI_API_KEY: "rotated", TINKER_API_KEY: "tk" } }, "frozen.json")
    if (again._tag === "Failure") throw new Error(again.failure.message)
    expect(Redacted.value(again.success.recipe.judge!.api_key!)).toBe("rotated")
    expect({ ...again.success.recipe, judge: undefined, policy: undefined }).toEqual({ ...recipe, judge: undefined, policy: undefined })
  })

  it("loads with unset or empty variables, warning about each at its value; their secrets are Secret.unset", async () => {
    const { dir, recipe, warnings } = await loadOk(files, { env: { TINKER_API_KEY: "" } })
    expect(warnings.map((w) => RecipeLoader.formatError(w).split(`${dir}${sep}`).join(""))).toEqual([
      "recipe.yaml:4:12: judge.api_key: environment variable GEMINI_API_KEY is not set; nodes that need it fail until it is set",
      "recipe.yaml:8:12: policy.api_key: environment variable TINKER_API_KEY is empty; nodes that need it fail until it is set"
    ])
    expect(Secret.unsetVariables(recipe.judge!.api_key, recipe.policy!.api_key)).toEqual(["GEMINI_API_KEY", "TINKER_API_KEY"])
    const set = await loadOk(files, { env })
    expect(set.warnings).toEqual([])
    expect(Secret.unsetVariables(set.recipe.judge!.api_key, set.recipe.policy!.api_key)).toEqual([])
  })

  it("a malformed reference is still an error, an unset variable beside it only a warning", async () => {
    const { lines } = await loadFail({ "recipe.yaml": "pipeline: grpo\njudge:\n  backend: gemini\n  api_key: ${GEMINI_API_KEY}\npolicy:\n  backend: tinker\n  model: m\n  api_key: ${tinker}\n" })
    expect(lines).toEqual(["recipe.yaml:8:12: policy.api_key: \"${tinker}\" is not an environment variable reference; names are upper-case letters, digits and _"])
  })
})

describe("RecipeLoader: reporting", () => {
  it("reports several errors at once, sorted by file, line and column, --set last in argument order", async () => {
    const { lines, error } = await loadFail({
      "base.yaml": "pipeline: grpo\ngrpo:\n  group_size: 1\n",
      "recipe.yaml": [
        "extends: base.yaml", //               1
        "sampling: { temperature: -1, top_q: 0.9 }", // 2
        "grpo:", //                            3
        "  loss_type: ppo", //                 4
        "  stepz: 3", //                       5
        "judge:", //                           6
        "  backend: gemni", //                 7
        "  api_key: ${JUDGE_KEY}", //          8
        ""
      ].join("\n")
    }, { sets: ["seed=x", "eval.pairwise=maybe", "policy"] })
    expect(lines).toEqual([
      "base.yaml:3:15: grpo.group_size: Expected a value greater than or equal to 2, got 1",
      "recipe.yaml:2:26: sampling.temperature: Expected a value greater than or equal to 0, got -1",
      "recipe.yaml:2:30: sampling.top_q: unknown key \"top_q\"; did you mean \"top_p\"?",
      "recipe.yaml:4:14: grpo.loss_type: Expected \"grpo\" | \"bnpo\" | \"dapo\" | \"dr_grpo\", got \"ppo\"",
      "recipe.yaml:5:3: grpo.stepz: unknown key \"stepz\"; did you mean \"steps\"?",
      "recipe.yaml:7:12: judge.backend: Expected \"proxy\" | \"gemini\" | \"openai\" | \"simulated\", got \"gemni\"; did you mean \"gemini\"?",
      "--set seed=x: seed: Expected an integer, got \"x\"",
      "--set eval.pairwise=maybe: eval.pairwise: Expected true or false, got \"maybe\"",
      "--set policy: expected PATH=VALUE, e.g. --set grpo.steps=20"
    ])
    expect(error.errors.map((e) => e.path)).toEqual([
      "grpo.group_size", "sampling.temperature", "sampling.top_q", "grpo.loss_type", "grpo.stepz", "judge.backend", "seed", "eval.pairwise", ""
    ])
  })

  it("shows files inside the working directory relative to it", () => {
    const inside = join(process.cwd(), "recipes", "grpo.yaml")
    expect(RecipeLoader.formatError({ origin: `${inside}:3:5`, path: "grpo.steps", message: "m" })).toBe(`recipes${sep}grpo.yaml:3:5: grpo.steps: m`)
    expect(RecipeLoader.formatError({ origin: "/elsewhere/r.yaml:1:1", path: "", message: "m" })).toBe("/elsewhere/r.yaml:1:1: m")
    expect(RecipeLoader.formatError({ origin: "--set a=1", path: "a", message: "m" })).toBe("--set a=1: a: m")
  })

  it("names a recipe file that is not there", async () => {
    const dir = scratch({})
    const result = await loadIn(dir)
    expect(result._tag === "Failure" && result.failure.message).toBe(`${join(dir, "recipe.yaml")}: cannot read the recipe (no such file)`)
  })

  it("accepts anchors and aliases, and any key in record sections", async () => {
    const { recipe } = await loadOk({
      "recipe.yaml": "pipeline: grpo\nretries:\n  judge: &slow { attempts: 5, base_ms: 500 }\n  my_custom_class: *slow\nconcurrency: { cpu: 8, gpu_0: 1 }\n"
    })
    expect(recipe.retries).toEqual({ judge: { attempts: 5, base_ms: 500 }, my_custom_class: { attempts: 5, base_ms: 500 } })
    expect(recipe.concurrency).toEqual({ cpu: 8, gpu_0: 1 })
  })
})

describe("RecipeLoader: JSON Schema", () => {
  const schema = RecipeLoader.jsonSchema() as Record<string, any>

  it("is draft 2020-12, titled, and closed", () => {
    expect(schema.$schema).toBe("https://json-schema.org/draft/2020-12/schema")
    expect(schema.title).toBe("polaris recipe")
    expect(schema.type).toBe("object")
    expect(schema.required).toEqual(["pipeline"])
    expect(schema.additionalProperties).toBe(false)
    expect(schema.properties.grpo.additionalProperties).toBe(false)
    expect(schema.properties.retries.additionalProperties.additionalProperties).toBe(false)
  })

  it("accepts ${VAR} for secrets and keeps string patterns", () => {
    const secret = schema.properties.judge.properties.api_key
    expect(secret).toMatchObject({ type: "string", pattern: "^\\$\\{[A-Z_][A-Z0-9_]*\\}$" })
    expect(new RegExp(secret.pattern).test("${GEMINI_API_KEY}")).toBe(true)
    expect(new RegExp(secret.pattern).test("sk-123")).toBe(false)
    expect(schema.properties.stages.items.properties.uses.pattern).toBe("^[^#]+\\.ts#[A-Za-z_$][\\w$]*$")
  })

  it("is what recipes/recipe.schema.json ships (regenerate: npx tsx src/recipe/writeSchema.ts)", () => {
    expect(readFileSync(schemaFile, "utf8")).toBe(schemaText())
    expect(JSON.parse(readFileSync(schemaFile, "utf8"))).toEqual(schema)
  })
})

describe("the parse cache", () => {
  const cacheDir = join(import.meta.dirname, "..", "node_modules", ".cache", "polaris", "recipe-yaml")
  const entries = () => new Set(existsSync(cacheDir) ? readdirSync(cacheDir) : [])
  const added = (before: ReadonlySet<string>) => [...entries()].filter((f) => !before.has(f))

  it("remembers a file's parse by its bytes, origins and problems included, and reads an edited file afresh", () => {
    const dir = scratch({ "recipe.yaml": "pipeline: polaris\nseed: 1\nseed: 2\n", "ok.yaml": "pipeline: polaris\ngrpo:\n  steps: 3\n" })
    const before = entries()
    const bad = readYamlFile(join(dir, "recipe.yaml"))
    const ok = readYamlFile(join(dir, "ok.yaml"))
    const stored = added(before)
    expect(stored).toHaveLength(2)
    // Read back from the cache: equal, Map of origins and all, the problem still at its line:col.
    expect(readYamlFile(join(dir, "recipe.yaml"))).toEqual(bad)
    expect(bad.problems[0]).toMatchObject({ where: { file: join(dir, "recipe.yaml"), line: 3, col: 1 }, message: 'duplicate key "seed"' })
    expect(readYamlFile(join(dir, "ok.yaml"))).toEqual(ok)
    expect(ok.tree!.origins.get(["grpo", "steps"].join("\u0000"))).toEqual({ key: { file: join(dir, "ok.yaml"), line: 3, col: 3 }, value: { file: join(dir, "ok.yaml"), line: 3, col: 10 } })
    // Served from the cache: a planted entry is what the next read returns...
    for (const f of stored) {
      const path = join(cacheDir, f)
      const entry = JSON.parse(readFileSync(path, "utf8"))
      if (entry.value.tree === undefined) continue
      entry.value.tree.value.grpo.steps = 99
      writeFileSync(path, JSON.stringify(entry))
    }
    expect(readYamlFile(join(dir, "ok.yaml")).tree!.value).toEqual({ pipeline: "polaris", grpo: { steps: 99 } })
    // ...and other bytes are another key.
    writeFileSync(join(dir, "ok.yaml"), "pipeline: polaris\ngrpo:\n  steps: 4\n")
    expect(readYamlFile(join(dir, "ok.yaml")).tree!.value).toEqual({ pipeline: "polaris", grpo: { steps: 4 } })
  })

  it("parses a file every time when JSON cannot hold its values (.inf, .nan, -0)", () => {
    const dir = scratch({ "recipe.yaml": "a: .inf\nb: -0\nc: .nan\n" })
    const before = entries()
    for (let i = 0; i < 2; i++) {
      const { a, b, c } = readYamlFile(join(dir, "recipe.yaml")).tree!.value as { a: number; b: number; c: number }
      expect([a, Object.is(b, -0), Number.isNaN(c)]).toEqual([Infinity, true, true])
    }
    expect(added(before)).toEqual([])
  })
})
