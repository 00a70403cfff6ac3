#!/bin/sh
':' //; [ -n "$POLARIS_KEEP_EXTRA_CA_CERTS" ] || case "$1" in plan|validate|status|dag|explain|compare|report|schema|cache|export-metrics|-h|--help|-v|--version|"") unset NODE_EXTRA_CA_CERTS;; esac; exec node "$0" "$@"
// The line above is sh, and to node a string and a comment: the #! line runs this file with /bin/sh
// as the installed `polaris` command (npx polaris, node_modules/.bin/polaris), which then starts
// node on it. For the commands that never connect anywhere it starts node without
// NODE_EXTRA_CA_CERTS: when that is set, Node 20 reads the file and builds its whole root
// certificate store before any JavaScript runs (nodejs/node#40524), 35-40 ms of every start on a
// machine that sets it for every process (this VM does). Every other command keeps it: a remote
// engine behind a TLS-intercepting proxy needs those certificates. POLARIS_KEEP_EXTRA_CA_CERTS=1
// keeps it for all (a user's pipeline module that connects somewhere while it is imported).
// `node bin/polaris.js` runs the same code with the environment as it is.
//
// The polaris command. It runs the prebuilt bundle (dist/cli/, made by `npm ci` through
// scripts/build-cli.mjs) while every source it was built from is unchanged: plain node, no
// TypeScript loader, a fraction of the start-up. Otherwise (an edited checkout, no bundle,
// POLARIS_SOURCES=1, `watch`, a .ts argument, a module the bundle cannot load; see
// src/cli/BundledImporter.ts) it loads the TypeScript sources through tsx, as before. The two run
// the same code, with the same cache keys.
//
// CommonJS (bin/package.json), like the bundles: an ES module entry would set up node's module
// loader for itself alone, 5-8 ms of every start (`--help` 0.965x, 20 interleaved pairs).
const { readFileSync, renameSync, writeFileSync } = require("node:fs")
const Module = require("node:module")
const { dirname, resolve } = require("node:path")
const { fileURLToPath, pathToFileURL } = require("node:url")
const vm = require("node:vm")
const { bundleIsCurrent } = require("./bundle-current.js")

// `polaris ... | head` closes the pipe early: that is the reader's choice, not an error.
process.stdout.on("error", (e) => {
  if (e.code === "EPIPE") process.exit(0)
  throw e
})

const root = pathToFileURL(dirname(__dirname) + "/")

const args = process.argv.slice(2)
// `watch` re-imports edited modules, which only Node's loader (through tsx) does.
const wantsSources = process.env.POLARIS_SOURCES === "1" || args[0] === "watch"

// POLARIS_DEBUG=loader: say on stderr which of the two ran (tests check the choice).
const say = (line) => {
  if (process.env.POLARIS_DEBUG === "loader") process.stderr.write(`polaris: ${line}\n`)
}

const fromSources = async () => {
  say("loader sources")
  // Effect's JavaScript is imported first, before tsx's loader hooks exist: hundreds of modules then
  // load at plain-node speed instead of each one crossing the hooks (measured: ~2x faster start).
  await import("effect")
  await import("effect/cli")
  await import("@effect/platform-node/NodeServices")
  const { register } = await import("tsx/esm/api")
  register()
  const { main } = await import("../src/cli/main.ts")
  await main()
}

/** Writes V8's code cache of `script` through a temporary file and a rename, so concurrent commands never read half of one. */
const writeCache = (script, cacheFile) => {
  try {
    const tmp = `${cacheFile}.${process.pid}.tmp`
    writeFileSync(tmp, script.createCachedData())
    renameSync(tmp, cacheFile)
  } catch {
    // a read-only installation: the next start compiles again
  }
}

/**
 * Loads a bundle with V8's code cache (`<bundle>.cache`): parsing and compiling megabytes of
 * JavaScript is most of what a bundled start costs, and the cache skips it. The build makes the
 * cache after a `plan` (scripts/build-cli.mjs, POLARIS_CODE_CACHE=after-command), so it holds the
 * bytecode of what the commands that run nothing call, not only of the modules' top level. A
 * start with no cache (or one V8 rejected: another node version) writes it right after the
 * modules' top level ran, before the command: a cache taken after a long command (a training
 * run) made every later start's module set-up 70 ms slower (measured: 100 ms against 30).
 * Returns the bundle's `main` and what to do once it is done.
 */
const fromBundle = (name) => {
  const file = fileURLToPath(new URL(`dist/cli/${name}`, root))
  const cacheFile = `${file}.cache`
  let cachedData
  try {
    cachedData = readFileSync(cacheFile)
  } catch {
    cachedData = undefined
  }
  // latin1: the bundle is ASCII (build-cli.mjs), and Node 20 decodes latin1 in half utf8's time.
  // The file is already wrapped as a CommonJS module function (build-cli.mjs).
  const script = new vm.Script(readFileSync(file, "latin1"), { filename: file, cachedData })
  const module = { exports: {} }
  script.runInThisContext()(module.exports, Module.createRequire(file), module, file, dirname(file))
  const afterCommand = process.env.POLARIS_CODE_CACHE === "after-command"
  if (!afterCommand && (cachedData === undefined || script.cachedDataRejected)) writeCache(script, cacheFile)
  return { main: module.exports.main, done: () => afterCommand && writeCache(script, cacheFile) }
}

/** Runs a bundle's command; whether it ran, or left the recipe to the next loader. */
const runBundle = async (name) => {
  const bundle = fromBundle(name)
  const result = await bundle.main()
  bundle.done()
  if (result === "needs-sources") return false
  say(`ran ${name}`)
  return true
}

/**
 * The user's TypeScript modules the command names: a .ts argument, or a recipe argument's
 * `pipeline:` and `uses:` modules (relative to the recipe). Those import effect, which the lean
 * bundle does not carry. A guess from the text: a module it misses costs one false start of a
 * bundle (each hands over before anything is written), never a wrong result.
 */
const userModules = () =>
  args.flatMap((a) => {
    if (/\.[cm]?tsx?$/.test(a)) return [resolve(a)]
    if (!/\.ya?ml$/.test(a)) return []
    try {
      return [...readFileSync(a, "utf8").matchAll(/^\s*-?\s*(?:pipeline|uses):\s*["']?([^\s"'#]+\.[cm]?tsx?)\b/gm)].map((m) => resolve(dirname(a), m[1]))
    } catch {
      return []
    }
  })

/**
 * Whether one of `files` imports by name a member of effect the core bundle does not carry
 * (dist/cli/core.json), or an entry point of effect other than its index: then the core bundle's
 * false start is skipped. Its own check of each module's compiled code stays the rule.
 */
const importsBeyondCore = (files) => {
  let core
  try {
    core = JSON.parse(readFileSync(fileURLToPath(new URL("dist/cli/core.json", root)), "utf8")).effect
  } catch {
    return false
  }
  return files.some((file) => {
    let text
    try {
      text = readFileSync(file, "utf8")
    } catch {
      return false
    }
    if (/["']effect\//.test(text)) return true
    for (const m of text.matchAll(/\b(?:import|export)\s+(type\s+)?\{([^}]*)\}\s*from\s*["']effect["']/g)) {
      if (m[1] !== undefined) continue
      const names = m[2].split(",").map((part) => part.trim()).filter((part) => part !== "" && !part.startsWith("type "))
      if (names.some((part) => !core.includes(part.split(/\s+as\s+/)[0]))) return true
    }
    return false
  })
}

const start = async () => {
  if (wantsSources || !bundleIsCurrent(root)) return fromSources()
  // The lean bundle first, unless the command names a user's module: it carries everything but
  // effect for a user's modules. Then the core bundle (effect's common modules), then the full
  // one (build-cli.mjs); each hands over before anything is written.
  say("loader bundle")
  const modules = userModules()
  if (modules.length === 0 && (await runBundle("main.cjs"))) return
  if (!importsBeyondCore(modules)) {
    say("loader bundle core (this recipe's modules import effect)")
    if (await runBundle("main-core.cjs")) return
  }
  say("loader bundle full (this recipe's modules import what the core bundle does not carry)")
  if (await runBundle("main-full.cjs")) return
  say("the bundle cannot load this recipe's modules")
  await fromSources()
}

/**
 * Ends the process once the command is done. Left to itself, node would first run V8's pending
 * background work at the end of the event loop (optimizing compiles of the command's hot
 * functions, an idle-time scavenge and mark-compact: 10-40 ms the command never needs). Output
 * still queued on an asynchronous stream (a pipe on macOS) is left to the event loop to finish.
 */
const exitWhenWritten = () => {
  if (process.stdout.writableLength === 0 && process.stderr.writableLength === 0) process.exit()
}

start().then(exitWhenWritten)
