/**
 * The prebuilt command (dist/cli, scripts/build-cli.mjs) against the TypeScript sources: it is
 * used only while current, it runs the same code (the same cache keys for built-in stages and a
 * user's own), and what it cannot load goes to the sources, before anything is written.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { polaris, ROOT } from "./support/cli.ts"
import { tempDirInRepo } from "./support/store.ts"
import { writeEpub } from "./support/zip.ts"
import { bundleIsCurrent } from "../bin/bundle-current.js"

const loader = (env: Record<string, string> = {}) => {
  const { POLARIS_SOURCES: _, ...rest } = process.env
  return { ...rest, POLARIS_DEBUG: "loader", ...env }
}
const BUNDLE = loader()
const SOURCES = loader({ POLARIS_SOURCES: "1" })
const used = (stderr: string) => /polaris: loader (\w+)/.exec(stderr)?.[1]
/** Each executed node's output object, from a store's run logs. */
const outputs = (store: string) =>
  new Map(readdirSync(join(store, "runs")).flatMap((run) =>
    readFileSync(join(store, "runs", run, "events.jsonl"), "utf8").trim().split("\n").map((line) => JSON.parse(line) as { type: string; node?: string; object?: string })
      .filter((e) => e.type === "node_finished").map((e) => [e.node!, e.object!] as const)))


// The smallest quickstart that has every stage of a training step and the evaluation.
const SMALL = ["--set", "grpo.steps=1", "--set", "grpo.groups_per_step=1", "--set", "eval.prompts_per_bucket=1", "--set", "eval.buckets=[{name: id, min_words: 40, max_words: 150}]"]

describe("the prebuilt command", () => {
  it("is built when missing or stale, and then used; POLARIS_SOURCES=1 runs the sources", async () => {
    // `npm ci` builds it (the `prepare` script); an edited checkout rebuilds it with `npm run build`.
    if (!bundleIsCurrent(new URL("../", import.meta.url))) execFileSync(process.execPath, [join(ROOT, "scripts", "build-cli.mjs")], { cwd: ROOT })
    const bundled = await polaris(["--help"], { env: BUNDLE })
    const sources = await polaris(["--help"], { env: SOURCES })
    expect(used(bundled.stderr)).toBe("bundle")
    expect(bundled.stderr).not.toContain("loader bundle full")
    expect(used(sources.stderr)).toBe("sources")
    expect(bundled.stdout).toBe(sources.stdout)
    expect(bundled.stdout).toContain("polaris")
  }, 60_000)

  it("is plain ASCII (read as latin1) and splits stories as the sources do: the text rules' non-ASCII patterns survive the escaping", async () => {
    for (const file of readdirSync(join(ROOT, "dist", "cli")).filter((f) => f.endsWith(".cjs"))) {
      expect(/[^\x00-\x7f]/.test(readFileSync(join(ROOT, "dist", "cli", file), "utf8")), file).toBe(false)
    }
    const args = ["data", "split", "examples/anthologies", "--json"]
    const bundled = await polaris(args, { env: BUNDLE })
    const sources = await polaris(args, { env: SOURCES })
    expect(used(bundled.stderr)).toBe("bundle")
    expect(bundled.status).toBe(0)
    expect(bundled.stdout).toBe(sources.stdout)
    // Titles with curly quotes and em dashes: the rules that match them ran on this text.
    expect(bundled.stdout).toMatch(/[\u2018\u2019\u201c\u201d\u2014]/)
  }, 60_000)

  it("requires node's heavier built-ins on first use: `--help` loads none of them; a deflated EPUB (zlib) splits as the sources split it", async () => {
    const dir = tempDirInRepo("bundle-builtins-")
    // Preloaded into the command's process: the built-ins it loaded, in its stderr at exit.
    const preload = join(dir, "builtins.cjs")
    writeFileSync(preload, [
      `const Module = require("node:module")`,
      `const seen = new Set()`,
      `const load = Module._load`,
      `Module._load = function (request, ...rest) { if (Module.isBuiltin(request)) seen.add(request.replace(/^node:/, "")); return load.call(this, request, ...rest) }`,
      `process.on("exit", () => process.stderr.write("builtins: " + [...seen].sort().join(" ") + "\\n"))`
    ].join("\n"))
    const withPreload = { ...BUNDLE, NODE_OPTIONS: `--require ${preload}` }
    const loaded = (stderr: string) => /builtins: (.*)/.exec(stderr)?.[1]?.split(" ") ?? []
    const help = await polaris(["--help"], { env: withPreload })
    expect(help.status, help.stderr).toBe(0)
    expect(used(help.stderr)).toBe("bundle")
    expect(loaded(help.stderr)).toContain("fs")
    for (const lazy of ["crypto", "zlib", "child_process", "readline", "fs/promises"]) expect(loaded(help.stderr)).not.toContain(lazy)
    const para = (word: string) => Array.from({ length: 120 }, () => word).join(" ")
    const book = join(dir, "book.epub")
    writeFileSync(book, writeEpub([{ file: "ch01.xhtml", title: "The First", paragraphs: [para("alpha")] }, { file: "ch02.xhtml", title: "The Second", paragraphs: [para("beta")] }], 8))
    const bundled = await polaris(["data", "split", book, "--json"], { env: withPreload })
    expect(bundled.status, bundled.stderr).toBe(0)
    expect(used(bundled.stderr)).toBe("bundle")
    expect(loaded(bundled.stderr)).toContain("zlib")
    expect(JSON.parse(bundled.stdout).map((s: { title: string }) => s.title)).toEqual(["The First", "The Second"])
    expect(bundled.stdout).toBe((await polaris(["data", "split", book, "--json"], { env: SOURCES })).stdout)
  }, 60_000)

  it("comes with a code cache made after a `plan`, which holds more than the modules' top level; a start with no cache writes one of the top level", async () => {
    const cache = join(ROOT, "dist", "cli", "main.cjs.cache")
    const built = readFileSync(cache)
    try {
      rmSync(cache)
      const fresh = await polaris(["--help"], { env: BUNDLE })
      expect(used(fresh.stderr)).toBe("bundle")
      const topLevel = readFileSync(cache)
      // The bytecode of the recipe loader, the pipeline builder, keys and plan on top of it.
      expect(built.length).toBeGreaterThan(topLevel.length * 1.2)
      writeFileSync(cache, built)
      const warmed = await polaris(["--help"], { env: BUNDLE })
      expect(warmed.stdout).toBe(fresh.stdout)
      // V8 took it: a rejected cache is written anew, after the top level.
      expect(readFileSync(cache).equals(built)).toBe(true)
    } finally {
      writeFileSync(cache, built)
    }
  }, 60_000)

  it("exits as soon as its command is done, with all of its output and its exit status", async () => {
    // 2.3 MB through a pipe, far past the pipe's buffer: the launcher's exit must not cut it short.
    const args = ["dag", "recipes/polaris-qwen3.5-9b.yaml", "--format", "dot"]
    const bundled = await polaris(args, { env: BUNDLE })
    const sources = await polaris(args, { env: SOURCES })
    expect(used(bundled.stderr)).toBe("bundle")
    expect(bundled.status).toBe(0)
    expect(bundled.stdout.length).toBeGreaterThan(1_000_000)
    expect(bundled.stdout).toBe(sources.stdout)
    const failed = await polaris(["validate", "no-such-recipe.yaml"], { env: BUNDLE })
    expect(failed.status).toBe(2)
    expect(failed.stderr).toContain("no-such-recipe.yaml: cannot read the recipe")
  }, 60_000)

  it("a changed source makes it stale: the sources run until it is rebuilt", async () => {
    const file = join(ROOT, "src", "text", "WordCount.ts")
    const { atime, mtime } = statSync(file)
    try {
      utimesSync(file, atime, new Date(mtime.getTime() + 2000))
      expect(used((await polaris(["--help"], { env: BUNDLE })).stderr)).toBe("sources")
    } finally {
      utimesSync(file, atime, mtime)
    }
    expect(used((await polaris(["--help"], { env: BUNDLE })).stderr)).toBe("bundle")
  }, 60_000)

  it("gives built-in stages the keys and outputs the sources give (its sampling workers are bundled too): a run by one is fully cached for the other", async () => {
    const dir = tempDirInRepo("bundle-")
    const first = await polaris(["run", "recipes/quickstart.yaml", ...SMALL, "--store", dir, "--progress", "none"], { env: BUNDLE })
    expect(first.status, first.stderr).toBe(0)
    expect(used(first.stderr)).toBe("bundle")
    expect(first.stderr).toContain("polaris: sampling worker bundle")
    expect(first.stdout).toMatch(/: [1-9]\d* executed/)
    // The same run from the sources on a fresh store: every node's output is the same object.
    const apart = tempDirInRepo("bundle-sources-")
    const fresh = await polaris(["run", "recipes/quickstart.yaml", ...SMALL, "--store", apart, "--progress", "none"], { env: SOURCES })
    expect(fresh.status, fresh.stderr).toBe(0)
    expect(fresh.stderr).toContain("polaris: sampling worker sources")
    const bundledOutputs = outputs(dir)
    expect(bundledOutputs.size).toBeGreaterThan(20)
    expect(outputs(apart)).toEqual(bundledOutputs)
    const second = await polaris(["run", "recipes/quickstart.yaml", ...SMALL, "--store", dir, "--progress", "none"], { env: SOURCES })
    expect(second.status, second.stderr).toBe(0)
    expect(second.stdout).toMatch(/: 0 executed, \d+ cached/)
  }, 300_000)

  it("runs a user's TypeScript pipeline and custom stages with the bundle's polaris, under the keys the sources give", async () => {
    const dir = tempDirInRepo("bundle-user-")
    const bundled = await polaris(["run", "examples/word-stats/recipe.yaml", "--store", dir, "--progress", "none"], { env: BUNDLE })
    expect(bundled.status, bundled.stderr).toBe(0)
    expect(used(bundled.stderr)).toBe("bundle")
    // Its modules import effect's Effect and Schema: the core bundle runs them.
    expect(bundled.stderr).toContain("polaris: ran main-core.cjs")
    expect(bundled.stderr).not.toContain("cannot load")
    expect(bundled.stdout).toMatch(/: 7 executed, 0 cached/)
    const sources = await polaris(["run", "examples/word-stats/recipe.yaml", "--store", dir, "--progress", "none"], { env: SOURCES })
    expect(sources.stdout).toMatch(/: 0 executed, 7 cached/)
    // And the other way round, on a fresh store.
    const other = tempDirInRepo("bundle-user-")
    await polaris(["run", "examples/word-stats/recipe.yaml", "--store", other, "--progress", "none"], { env: SOURCES })
    expect((await polaris(["run", "examples/word-stats/recipe.yaml", "--store", other, "--progress", "none"], { env: BUNDLE })).stdout).toMatch(/: 0 executed, 7 cached/)
  }, 120_000)

  it("gives a user's module one instance of each module it imports, read as often as it likes", async () => {
    const dir = tempDirInRepo("bundle-identity-")
    const file = join(dir, "same.ts")
    writeFileSync(file, [
      `import * as effect from "effect"`,
      `import { Effect, Schema } from "effect"`,
      `import * as polaris from "polaris"`,
      `import { PipelineModule, Stage } from "polaris"`,
      // Each read of a namespace member was a fresh copy of the module's namespace in the bundle.
      `const same = effect.Schema === effect.Schema && effect.Effect === Effect && polaris.Stage === polaris.Stage`,
      `const one = Stage.make({ name: "same-instance", version: "1", output: Schema.Boolean, run: () => Effect.succeed(same) })`,
      `export default PipelineModule.define("same", (b) => ({ same: b.node(one, { id: "same" }) }))`
    ].join("\n") + "\n")
    for (const env of [BUNDLE, SOURCES]) {
      const r = await polaris(["run", file, "--store", join(dir, "store"), "--json"], { env })
      expect(r.status, r.stderr).toBe(0)
      expect(JSON.parse(r.stdout).outputs.same).toBe(true)
    }
    expect((await polaris(["run", file, "--store", join(dir, "store"), "--json"], { env: BUNDLE })).stderr).toContain("polaris: ran main-core.cjs")
  }, 60_000)

  it("runs a module that reads a member of effect the core bundle does not carry on the full one, under the keys the sources give", async () => {
    const dir = tempDirInRepo("bundle-full-")
    const write = (name: string, lines: ReadonlyArray<string>) => {
      const file = join(dir, name)
      writeFileSync(file, [
        `import { Effect, Schema } from "effect"`,
        ...lines,
        `import { PipelineModule, Stage } from "polaris"`,
        `const count = Stage.make({ name: "count-${name.replace(/\W/g, "")}", version: "1", output: Schema.Number, run: () => counted })`,
        `export default PipelineModule.define("full", (b) => ({ n: b.node(count, { id: "n" }) }))`
      ].join("\n") + "\n")
      return file
    }
    writeFileSync(join(dir, "helper.ts"), `import { Stream } from "effect"\nexport const counted = Stream.runCount(Stream.make(1, 2, 3))\n`)
    // Whether the launcher goes to the full bundle at once (the module names `Stream` in its
    // imports) or learns it from the core bundle's check (a false start, before anything is written).
    const modules = [
      { file: write("stream.ts", [`import { Stream } from "effect"`, `const counted = Stream.runCount(Stream.make(1, 2, 3))`]), falseStart: false },
      // Through a module of its own: the launcher reads only the module it is given.
      { file: write("helped.ts", [`import { counted } from "./helper.ts"`]), falseStart: true },
      // A namespace read by a computed key: what it reads is not in the text.
      { file: write("computed.ts", [`import * as E from "effect"`, `const pick = (k: string) => (E as any)[k]`, `const counted = Effect.succeed(pick("Effect") === Effect ? 3 : 0)`]), falseStart: true }
    ]
    for (const { file, falseStart } of modules) {
      const bundled = await polaris(["run", file, "--store", join(dir, "store"), "--json"], { env: BUNDLE })
      expect(bundled.status, bundled.stderr).toBe(0)
      expect(bundled.stderr.includes("polaris: loader bundle core"), file).toBe(falseStart)
      expect(bundled.stderr).toContain("polaris: ran main-full.cjs")
      expect(JSON.parse(bundled.stdout).outputs.n).toBe(3)
      const sources = await polaris(["run", file, "--store", join(dir, "store"), "--progress", "none"], { env: SOURCES })
      expect(sources.stdout).toMatch(/: 0 executed, 1 cached/)
    }
  }, 120_000)

  it("hands a module it cannot load (top-level await, a dynamic import, an effect entry point it does not carry) to the sources, which run it", async () => {
    const dir = tempDirInRepo("bundle-fallback-")
    const write = (name: string, head: string, value: string) => {
      const file = join(dir, name)
      writeFileSync(file, [
        `import { Effect, Schema } from "effect"`,
        head,
        `import { PipelineModule, Stage } from "polaris"`,
        `const one = Stage.make({ name: "one-${name.replace(/\W/g, "")}", version: "1", output: Schema.Number, run: () => Effect.succeed(${value}) })`,
        `export default PipelineModule.define("fallback", (b) => ({ one: b.node(one, { id: "one" }) }))`
      ].join("\n") + "\n")
      return file
    }
    const modules = [
      write("tla.ts", "const n = await Promise.resolve(41)", "n + 1"),
      write("deep.ts", `import * as Order from "effect/Order"`, "Order.max(Order.Number)(41, 42)"),
      // Inside the bundle a dynamic import would fail only when the stage runs.
      write("dynamic.ts", `const later = () => import("node:path")`, "typeof later === \"function\" ? 42 : 0")
    ]
    for (const file of modules) {
      const r = await polaris(["run", file, "--store", join(dir, "store"), "--json"], { env: BUNDLE })
      expect(r.status, r.stderr).toBe(0)
      expect(r.stderr).toContain("polaris: loader bundle")
      expect(r.stderr).toContain("the bundle cannot load this recipe's modules")
      expect(r.stderr).toContain("polaris: loader sources")
      expect(JSON.parse(r.stdout).outputs.one).toBe(42)
    }
  }, 120_000)
})

describe("the installed command (bin/polaris.js run through its #! line, as `npx polaris` runs it)", () => {
  it("starts node without NODE_EXTRA_CA_CERTS for the commands that never connect, and with it for every other", () => {
    // A `node` first on PATH that prints what it was started with: the #! line's sh is what is tested.
    const dir = tempDirInRepo("installed-")
    const fake = join(dir, "node")
    writeFileSync(fake, `#!/bin/sh\nprintf '%s\\n' "\${NODE_EXTRA_CA_CERTS-unset}" "$@"\n`, { mode: 0o755 })
    const started = (args: ReadonlyArray<string>, env: NodeJS.ProcessEnv = {}) => {
      const lines = execFileSync(join(ROOT, "bin", "polaris.js"), args, {
        env: { ...process.env, PATH: `${dir}:${process.env.PATH}`, NODE_EXTRA_CA_CERTS: "/etc/extra.crt", ...env },
        encoding: "utf8"
      }).trimEnd().split("\n")
      return { extraCa: lines[0], argv: lines.slice(1) }
    }
    for (const offline of [["--help"], [], ["plan", "recipes/quickstart.yaml"], ["validate", "r.yaml"], ["status"], ["dag", "r.yaml"], ["compare", "a"], ["report"], ["cache", "ls"], ["explain"]]) {
      expect(started(offline).extraCa, offline.join(" ")).toBe("unset")
    }
    for (const online of [["run", "recipes/quickstart.yaml"], ["resume"], ["sweep", "r.yaml"], ["serve"], ["data", "stats", "r.yaml"], ["human-eval"], ["--log-level", "debug", "plan", "r.yaml"]]) {
      expect(started(online).extraCa, online.join(" ")).toBe("/etc/extra.crt")
    }
    expect(started(["plan", "r.yaml"], { POLARIS_KEEP_EXTRA_CA_CERTS: "1" }).extraCa).toBe("/etc/extra.crt")
    // node gets this very file and the arguments as given, spaces and all.
    expect(started(["plan", "my recipe.yaml", "--set", "a=b c"]).argv).toEqual([join(ROOT, "bin", "polaris.js"), "plan", "my recipe.yaml", "--set", "a=b c"])
  })

  it("runs the same command as `node bin/polaris.js`, with its output and exit status", () => {
    const run = (file: string, args: ReadonlyArray<string>) => {
      const r = spawnSync(file, args, { cwd: ROOT, env: BUNDLE, encoding: "utf8" })
      return { status: r.status, stdout: r.stdout, loader: used(r.stderr) }
    }
    for (const args of [["--help"], ["dag", "recipes/judge-references.yaml"], ["validate", "no-such-recipe.yaml"]]) {
      const installed = run(join(ROOT, "bin", "polaris.js"), args)
      expect(installed).toEqual(run(process.execPath, [join(ROOT, "bin", "polaris.js"), ...args]))
      expect(installed.loader).toBe("bundle")
    }
    expect(run(join(ROOT, "bin", "polaris.js"), ["validate", "no-such-recipe.yaml"]).status).toBe(2)
  }, 60_000)
})
