#!/usr/bin/env node
// Builds the `polaris` command into CommonJS bundles (dist/cli/: the lean main.cjs, main-core.cjs
// and main-full.cjs for a user's modules, the sampling workers' own), so a command that runs
// nothing starts in plain node instead of loading ~300 effect modules through tsx's hooks. `npm ci`
// runs it (`prepare`); bin/polaris.js uses the bundle only while every source file it was built
// from is unchanged (dist/cli/inputs.json), and runs the TypeScript through tsx otherwise, or when
// a recipe's modules need what no bundle carries.
//
// The bundle must behave exactly as the sources do, cache keys included:
// - `import.meta.url` / `dirname` / `filename` in a bundled module stand for that module's own
//   file (rubrics, the bundled model, the framework folder are found next to it);
// - `Stage.make({` gets `source:` its own file, so a stage's fingerprint reads the same source
//   it reads under tsx (a stack frame would name the chunk instead).
import { spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, relative, sep } from "node:path"
import Module from "node:module"
import { fileURLToPath } from "node:url"
import { build, transformSync } from "esbuild"

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..")
const OUT = join(ROOT, "dist", "cli")

// Libraries loaded from node_modules as they are: native code, files found next to their own
// modules, or code that runs only inside a node that needs it.
const EXTERNAL = ["onnxruntime-node", "esbuild", "tsx", "@google/genai", "@huggingface/*", "chokidar", "protobufjs", "protobufjs/*"]

/** The repository's own modules: rewritten so that they keep their identity inside a chunk. */
const ownModules = {
  name: "polaris-own-modules",
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (args) => {
      if (args.path.includes(`${sep}node_modules${sep}`)) return undefined
      const rel = relative(ROOT, args.path).split(sep).join("/")
      let text = readFileSync(args.path, "utf8")
      if (!rel.startsWith("src/dag/Stage.ts")) {
        const calls = text.match(/\bStage\.make\(\s*[^\s]/g) ?? []
        const literal = text.match(/\bStage\.make\(\s*\{/g) ?? []
        if (calls.length !== literal.length) {
          throw new Error(`${rel}: Stage.make must take an object literal in bundled modules (its source is injected)`)
        }
        text = text.replace(/\bStage\.make\(\s*\{/g, "Stage.make({ source: import.meta.url,")
      }
      text = importMembers(rel, text)
      const url = `__polarisUrl(${JSON.stringify(rel)})`
      // Not inside a string ("import.meta.url" as a key of esbuild's `define`).
      text = text
        .replace(/(?<!["'])\bimport\.meta\.url\b(?!["'])/g, url)
        .replace(/(?<!["'])\bimport\.meta\.dirname\b(?!["'])/g, `__polarisPath(${JSON.stringify(rel.split("/").slice(0, -1).join("/"))})`)
        .replace(/(?<!["'])\bimport\.meta\.filename\b(?!["'])/g, `__polarisPath(${JSON.stringify(rel)})`)
      return { contents: text, loader: "ts" }
    })
  }
}

/**
 * `import { Effect, Schema } from "effect"` made into imports of the two modules themselves: in
 * the bundle a module that imports a barrel initializes every module the barrel re-exports (all of
 * effect: ~140 modules, a third of a command's start-up), where each module needs a few.
 */
const membersOf = new Map()
const importMembers = (rel, text) =>
  text.replace(/import\s*\{([^}]*)\}\s*from\s*"(effect(?:\/cli|\/http)?)"/g, (_, names, pkg) => {
    if (!membersOf.has(pkg)) membersOf.set(pkg, new Map(barrelMembers(BARRELS[pkg]).map(([name, file, member]) => [name, { file, member }])))
    const members = membersOf.get(pkg)
    return names.split(",").map((part) => part.trim()).filter((part) => part !== "" && !part.startsWith("type ")).map((part) => {
      const [name, alias = name] = part.split(/\s+as\s+/)
      const m = members.get(name)
      if (m === undefined) throw new Error(`${rel}: "${name}" is not a member of ${pkg}`)
      const from = JSON.stringify(join(ROOT, m.file))
      return m.member === null ? `import * as ${alias} from ${from};` : `import { ${m.member} as ${alias} } from ${from};`
    }).join(" ")
  })

/**
 * effect/cli's CliOutput makes an `Intl.Segmenter` when it loads: 13-15 ms of ICU set-up on this
 * machine, paid by every command although only help text measures graphemes. The bundle makes it
 * on first use. A new effect version that changes the declaration fails the build here.
 */
const lazySegmenter = {
  name: "polaris-lazy-segmenter",
  setup(b) {
    b.onLoad({ filter: /[\\/]effect[\\/]dist[\\/]cli[\\/]CliOutput\.js$/ }, (args) => {
      const text = readFileSync(args.path, "utf8")
      const declaration = /const graphemeSegmenter = \/\*#__PURE__\*\/new Intl\.Segmenter\(([^)]*)\);/
      const uses = text.match(/graphemeSegmenter\.segment\(/g)?.length ?? 0
      if (!declaration.test(text) || uses === 0) throw new Error(`${args.path}: the grapheme segmenter is not declared as the bundle expects`)
      return {
        contents: text
          .replace(declaration, (_, options) => `let graphemeSegmenterMade;\nconst graphemeSegmenter = () => (graphemeSegmenterMade ??= new Intl.Segmenter(${options}));`)
          .replace(/graphemeSegmenter\.segment\(/g, "graphemeSegmenter().segment("),
        loader: "js"
      }
    })
  }
}

// The bundle lives in dist/cli/, two folders below the repository root.
const banner = [
  `const __polarisRoot = require("node:url").pathToFileURL(require("node:path").join(__dirname, "..", "..") + "/");`,
  `const __polarisUrl = (rel) => new URL(rel, __polarisRoot).href;`,
  `const __polarisPath = (rel) => require("node:url").fileURLToPath(new URL(rel === "" ? "." : rel, __polarisRoot)).replace(/\\/$/, "");`,
  // See lazyBuiltins below. `esm`: the namespace of `import * as X`, whose default is the module.
  `const __polarisLazy = (id, esm) => {`,
  `  let m;`,
  `  const load = () => (m ??= require(id));`,
  `  return new Proxy({}, {`,
  `    get: (_, k) => (esm && k === "default" ? load() : load()[k]),`,
  `    has: (_, k) => (esm && k === "default") || k in load(),`,
  `    ownKeys: () => [...Reflect.ownKeys(load()), ...(esm ? ["default"] : [])],`,
  `    getOwnPropertyDescriptor: (_, k) => {`,
  `      if (esm && k === "default") return { value: load(), enumerable: true, configurable: true };`,
  `      const d = Reflect.getOwnPropertyDescriptor(load(), k);`,
  // A proxy may not report a property its (empty, extensible) target lacks as non-configurable.
  `      return d === undefined ? undefined : { ...d, configurable: true };`,
  `    }`,
  `  });`,
  `};`
].join("\n")

/**
 * Node built-in modules that a command which runs nothing never calls, required on first use
 * instead of when the bundle loads: node compiles a built-in's JavaScript the first time it is
 * required, and these took 5-10 ms of every start on this VM (crypto with its cipher streams
 * 4-7, zlib 1.5-3.5, child_process 2.4-3.3, readline 0.8-1.3, fs/promises 1-1.5), paid by
 * `--help` as much as by a training run. The bundle reads them only through member accesses
 * (`(0, import_node_zlib.gzipSync)(...)`, `Crypto.randomUUID()`), which the proxy forwards. A
 * build whose bundle requires one another way fails here.
 */
const LAZY_BUILTINS = ["crypto", "zlib", "child_process", "readline", "fs/promises"]
const lazyBuiltins = (name, text) => {
  let out = text
  for (const id of LAZY_BUILTINS) {
    for (const spelling of [`node:${id}`, id]) {
      const q = JSON.stringify(spelling)
      out = out.split(`__toESM(require(${q}),1)`).join(`__polarisLazy(${q},1)`).split(`require(${q})`).join(`__polarisLazy(${q})`)
      if (out.split(q).length !== out.split(`__polarisLazy(${q}`).length) throw new Error(`${name}: ${spelling} is named in a form the lazy built-ins do not rewrite`)
    }
  }
  return out
}

/**
 * esbuild fills every module's export object (`__export(X_exports, { a: () => a, ... })`) at the
 * bundle's top level, for each module the bundle carries, used or not: 5,515 getter closures made
 * at every start of the full bundle (972 in the lean one), each in the code cache too. A module
 * wrapped for lazy initialization (`init_X = __esm(...)`) has its export object read only once
 * init_X() ran: esbuild's `(init_X(), __toCommonJS(X_exports))`, `(init_X(), X_exports)` for a
 * dynamic import, and a barrel's `export * as X` getter (`X: () => X_exports`, whose module's init
 * calls init_X). Such an object is filled as its init starts instead. A module whose export object
 * is named any other way keeps esbuild's order.
 */
const lazyExports = (name, text) => {
  const wrapped = /var ([\w$]+)={};__export\(\1,(\{[^{}]*\})\);(var [\w$,]*?(init_[\w$]+)=__esm\(\{"[^"]+"\(\)\{)/g
  const safe = (exports, init) => {
    const forms = [`var ${exports}={};`, `__export(${exports},`, `${init}(),__toCommonJS(${exports})`, `${init}(),${exports})`, `:()=>${exports},`, `:()=>${exports}}`]
    const named = new RegExp(`(?<![\\w$])${exports.replaceAll("$", "\\$")}(?![\\w$])`, "g")
    return [...text.matchAll(named)].every((m) => forms.some((f) => text.startsWith(f, m.index - f.indexOf(exports))))
  }
  let moved = 0
  const out = text.replace(wrapped, (all, exports, getters, head, init) => {
    if (!safe(exports, init)) return all
    moved++
    return `var ${exports}={};${head}__export(${exports},${getters});`
  })
  if (moved === 0) throw new Error(`${name}: no module's export object could be filled lazily: esbuild's output is not as expected`)
  return out
}

// The repository's modules, each addressable by its path: a user's pipeline or stage module may
// import any of them (relatively, or as `polaris/stages/...`), and must get the bundle's instance.
const OWN_FOLDERS = ["src", "stages", "pipelines"]
const tsFiles = (dir) =>
  readdirSync(join(ROOT, dir), { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? tsFiles(`${dir}/${e.name}`) : e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [`${dir}/${e.name}`] : [])
const own = OWN_FOLDERS.flatMap(tsFiles).sort()
// Packages a user's module may import, answered with the bundle's instances. A barrel (an index
// that only re-exports) becomes a namespace whose members load on first use: a module importing
// `Stage` from polaris, or `Effect` from effect, starts neither onnxruntime nor all of effect.
const BARRELS = {
  polaris: "src/index.ts",
  effect: "node_modules/effect/dist/index.js",
  "effect/http": "node_modules/effect/dist/http/index.js",
  "effect/cli": "node_modules/effect/dist/cli/index.js"
}
const MODULES = { "@effect/platform-node/NodeServices": "node_modules/@effect/platform-node/dist/NodeServices.js" }

/** A barrel's members: [name, file, member] (member null for `export * as name`). */
const barrelMembers = (index) => {
  const text = readFileSync(join(ROOT, index), "utf8").replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "")
  const dir = index.split("/").slice(0, -1).join("/")
  const members = []
  let exports = 0
  for (const m of text.matchAll(/export\s+\*\s+as\s+(\w+)\s+from\s+"\.\/([^"]+)"/g)) members.push([m[1], `${dir}/${m[2]}`, null])
  for (const m of text.matchAll(/export\s*\{([^}]*)\}\s*from\s*"\.\/([^"]+)"/g)) {
    for (const part of m[1].split(",").map((p) => p.trim()).filter((p) => p !== "" && !p.startsWith("type "))) {
      const [name, alias] = part.split(/\s+as\s+/)
      members.push([alias ?? name, `${dir}/${m[2]}`, name])
    }
  }
  for (const m of text.matchAll(/^export\s+(?!type\b)/gm)) exports++
  const read = (text.match(/export\s+\*\s+as\s/g) ?? []).length + (text.match(/export\s*\{[^}]*\}\s*from/g) ?? []).length
  if (read !== exports) throw new Error(`${index}: ${exports - read} export(s) not of the forms "export * as X from" or "export { a } from"; the bundle's lazy namespace cannot carry them`)
  return members
}

// One namespace per package, each member looked up once: a bundled require of a module makes a
// new copy of its namespace (esbuild's __toCommonJS, ~600 getters for effect's Schema), and a
// user's module compiled to CommonJS requires a package once per import statement and reads
// `import_effect.Schema` at every use.
const lazyNamespace = (index, only) =>
  [
    `(() => {`,
    `    const found = new Map()`,
    `    const once = (name, load) => { if (!found.has(name)) found.set(name, load()); return found.get(name) }`,
    `    let namespace`,
    `    return () => (namespace ??= Object.defineProperties({}, {`,
    `      __esModule: { value: true },`,
    ...barrelMembers(index).filter(([name]) => only === undefined || only.includes(name)).map(([name, file, member]) =>
      `      ${JSON.stringify(name)}: { enumerable: true, get: () => once(${JSON.stringify(name)}, () => require(${JSON.stringify(`./${file}`)})${member === null ? "" : `[${JSON.stringify(member)}]`}) },`),
    `    }))`,
    `  })()`
  ].join("\n")

/**
 * The members of effect that main-core.cjs carries for a user's module, whole: what stages and
 * pipelines import (every module in examples/, docs/ and the tests' fixtures imports only
 * Effect, Schema, Context, Layer, Data, Duration) and a few common companions. Each module
 * carried whole is no longer cut down to what polaris uses, so it costs every start of that bundle
 * (its read, compile and set-up, in one process: lean 67 ms, these 12 about 81, 29 modules 87,
 * all of effect 110).
 */
const CORE = ["Config", "Console", "Context", "Data", "Duration", "Effect", "Function", "Layer", "Option", "Redacted", "Schedule", "Schema"]

/**
 * The command's entry, for each bundle (bin/polaris.js runs the first that can load the recipe's
 * modules; each learns that it cannot before anything is written):
 * - `lean` (main.cjs) carries no effect for a user's module: all of it would be 1.2 MB more to
 *   read, compile and set up at every start, ~40 ms of a command's ~250;
 * - `core` (main-core.cjs) carries effect's CORE members, and only them: a user's module that
 *   reads any other member, or reads its namespace some other way, is left to the next bundle
 *   (src/cli/BundledImporter.ts checks the module's code before it runs);
 * - `full` (main-full.cjs) carries all of effect, `effect/http`, `effect/cli`.
 */
const entryOf = (kind) => [
  `import { useImporter } from "./src/dag/PipelineModule.ts"`,
  `import { importer } from "./src/cli/BundledImporter.ts"`,
  `import { useWorkerScript } from "./src/model/WorkerScript.ts"`,
  `export { main } from "./src/cli/main.ts"`,
  `useWorkerScript(require("node:path").join(__dirname, "sampler-worker.cjs"))`,
  `useImporter(importer({`,
  `  root: require("node:path").join(__dirname, "..", ".."),`,
  `  files: {`,
  ...own.map((f) => `    ${JSON.stringify(f)}: () => require(${JSON.stringify(`./${f}`)}),`),
  `  },`,
  `  packages: {`,
  ...Object.entries(BARRELS).filter(([name]) => kind === "full" || name === "polaris").map(([name, index]) => `    ${JSON.stringify(name)}: ${lazyNamespace(index)},`),
  ...(kind === "core" ? [`    "effect": ${lazyNamespace(BARRELS.effect, CORE)},`] : []),
  ...Object.entries(MODULES).filter(() => kind === "full").map(([name, file]) => `    ${JSON.stringify(name)}: () => require(${JSON.stringify(`./${file}`)}),`),
  `  },`,
  `  partial: ${JSON.stringify(kind === "core" ? { effect: CORE } : {})}`,
  `}))`
].join("\n")

rmSync(OUT, { recursive: true, force: true })
mkdirSync(OUT, { recursive: true })
const common = {
  absWorkingDir: ROOT,
  bundle: true,
  format: "cjs",
  platform: "node",
  target: "node20",
  external: EXTERNAL,
  minifyWhitespace: true,
  minifySyntax: true,
  banner: { js: banner },
  metafile: true,
  logLevel: "warning",
  plugins: [ownModules, lazySegmenter]
}
const BUNDLES = { lean: "main.cjs", core: "main-core.cjs", full: "main-full.cjs" }
const buildMain = (kind) =>
  build({ ...common, stdin: { contents: entryOf(kind), resolveDir: ROOT, sourcefile: "cli-entry.js", loader: "js" }, outfile: join(OUT, BUNDLES[kind]) })
const [lean, core, full] = [await buildMain("lean"), await buildMain("core"), await buildMain("full")]
// The sampling workers' own bundle (src/model/WorkerScript.ts): the model's modules only, no TypeScript loader.
const worker = await build({ ...common, entryPoints: [join(ROOT, "src/model/SamplerWorker.ts")], outfile: join(OUT, "sampler-worker.cjs") })
const built = [lean, core, full, worker]
const result = { metafile: { inputs: Object.assign({}, ...built.map((b) => b.metafile.inputs)), outputs: Object.assign({}, ...built.map((b) => b.metafile.outputs)) } }

const WRAP = Module.wrap("\0").split("\0")

// Every bundle in plain ASCII: esbuild escapes strings but leaves regular expression literals as
// written (curly quotes, dashes in the text rules). Node 20 decodes a UTF-8 file with non-ASCII
// bytes into a two-byte string, 22 ms for main.cjs on this VM; bin/polaris.js reads the ASCII
// file as latin1 instead (12 ms). A \uXXXX escape means the same code unit in a string, a template,
// a regular expression (with or without /u: a surrogate pair of escapes is one code point there)
// and an identifier.
for (const name of Object.keys(result.metafile.outputs)) {
  const file = join(ROOT, name)
  const command = /main(-core|-full)?\.cjs$/.test(name)
  const rewritten = lazyBuiltins(name, readFileSync(file, "utf8"))
  // A command bundle is stored as node's CommonJS loader would wrap it (`Module.wrap`), so
  // bin/polaris.js compiles the text as it was read: the wrapper added in memory made V8 copy the
  // whole source into one flat string first (1.8 MB, 3.2 for the full bundle). Inside the
  // function its names are local, and shortened: 1.8 -> 1.2 MB and 3.2 -> 2.0 MB to read at every
  // start, a smaller code cache (after the rewrites, which find esbuild's helpers by name).
  // Stack traces name shortened functions; POLARIS_SOURCES=1 runs the sources as written.
  const text = command
    ? transformSync(`${WRAP[0]}${lazyExports(name, rewritten)}${WRAP[1]}`, { minifyIdentifiers: true, minifyWhitespace: true, treeShaking: false, target: "node20" }).code
    : rewritten
  // `\’` (an identity escape) is `’` itself: its backslash goes, or it would escape the new one.
  const ascii = text.replace(/(\\*)([^\x00-\x7f])/g, (_, slashes, c) =>
    `${slashes.slice(slashes.length % 2)}\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`)
  // A raw template keeps the escape as written: right only where it is a RegExp's source.
  for (const m of text.matchAll(/(new RegExp\()?String\.raw`([^`]*)`/g)) {
    if (m[1] === undefined && /[^\x00-\x7f]/.test(m[2])) throw new Error(`${name}: a String.raw template holds non-ASCII text, which the ASCII escape would change: ${m[0].slice(0, 80)}`)
  }
  writeFileSync(file, ascii)
}

// The sources the bundle was built from, with their sizes and modification times: a changed
// one makes bin/polaris.js run the sources instead.
// The build script and the launcher are among them: they decide the bundle's form.
const inputs = [...Object.keys(result.metafile.inputs), "scripts/build-cli.mjs", "bin/polaris.js"]
  .filter((p) => !p.startsWith("node_modules/") && !p.includes("/node_modules/") && p !== "cli-entry.js")
  .sort()
  .map((p) => {
    const s = statSync(join(ROOT, p))
    return [p, s.size, Math.round(s.mtimeMs)]
  })
// What the core bundle carries, for bin/polaris.js's guess of which bundle a user's module needs.
writeFileSync(join(OUT, "core.json"), JSON.stringify({ effect: CORE }) + "\n")
const lock = statSync(join(ROOT, "package-lock.json"))
writeFileSync(join(OUT, "inputs.json"), JSON.stringify({ lock: [lock.size, Math.round(lock.mtimeMs)], inputs }) + "\n")
const bytes = Object.values(result.metafile.outputs).reduce((s, o) => s + o.bytes, 0)
process.stdout.write(`polaris: built dist/cli (${Object.keys(result.metafile.outputs).length} files, ${(bytes / 1e6).toFixed(1)} MB, ${inputs.length} sources)\n`)

/**
 * Each command bundle's V8 code cache, made after a `plan` (bin/polaris.js writes it once the
 * command is done under POLARIS_CODE_CACHE=after-command): it then holds the bytecode of what the
 * commands that run nothing call (recipe loading, the pipeline builder, keys, plan, the CLI's
 * help) besides the modules' top level, which a start would otherwise compile lazily. Measured by
 * interleaved pairs against a cache of the top level alone: `plan` of the paper recipe 0.961x,
 * `validate` quickstart 0.963x, `--help` 0.978x, `dag` 0.987x (16 pairs); `plan` of the cached
 * 1,000-node DAG 0.973x on the full bundle, its `run` 1.007x (12). A warm-up that fails leaves no
 * cache: the first start writes one, as before.
 */
const scratch = mkdtempSync(join(tmpdir(), "polaris-build-"))
// A user's module that reads a member of effect main-core.cjs does not carry: it runs on the full bundle.
const outsideCore = join(scratch, "stream.ts")
writeFileSync(outsideCore, [
  `import { Schema, Stream } from "effect"`,
  `import { PipelineModule, Stage } from "polaris"`,
  `const count = Stage.make({ name: "count", version: "1", output: Schema.Number, run: () => Stream.runCount(Stream.make(1, 2)) })`,
  `export default PipelineModule.define("warm-up", (b) => ({ n: b.node(count, { id: "n" }) }))`
].join("\n") + "\n")
// The full bundle's before the core one's: a start of the core bundle that hands over writes its cache too.
const warmUps = [
  ["main.cjs", ["plan", "recipes/polaris-qwen3.5-9b.yaml"]],
  ["main-full.cjs", ["plan", outsideCore]],
  // A recipe whose pipeline is a user's module importing effect's core members.
  ["main-core.cjs", ["plan", "examples/word-stats/recipe.yaml"]]
]
try {
  const { POLARIS_SOURCES: _, ...env } = process.env
  for (const [bundle, args] of warmUps) {
    const r = spawnSync(process.execPath, [join(ROOT, "bin", "polaris.js"), ...args, "--store", join(scratch, "store")], {
      cwd: ROOT,
      env: { ...env, POLARIS_CODE_CACHE: "after-command", POLARIS_DEBUG: "loader" },
      encoding: "utf8"
    })
    const cached = statSync(join(OUT, `${bundle}.cache`), { throwIfNoEntry: false })
    if (r.status !== 0 || cached === undefined || !r.stderr.includes(`polaris: ran ${bundle}`)) process.stderr.write(`polaris: the code cache of ${bundle} was not made (polaris ${args.join(" ")} exited ${r.status}): ${r.stderr}\n`)
  }
} finally {
  rmSync(scratch, { recursive: true, force: true })
}
