/**
 * Source fingerprints: a stage's cache key includes a hash of the code that computes its output,
 * so an edit that can change results re-runs the stage (and, by early cutoff, nothing else unless
 * its output changes), while an edit that cannot (a comment, formatting, a type) keeps the cache:
 * a 160-step run must not restart because someone reworded a doc comment.
 *
 * The rule (ARCHITECTURE.md §5, exactness rules) is what runs, and nothing else:
 * - each module enters in a normal form, the JavaScript esbuild emits for it without whitespace
 *   or comments, because that (and not the text) is what tsx executes;
 * - the closure follows the imports of that JavaScript, so a module imported only for its types
 *   (erased, as tsx erases it) does not count;
 * - every stage also gets the executor's `ctx.random` module, which it uses without importing;
 * - the libraries that compute values count by their resolved version (`VALUE_LIBRARIES`);
 * - the framework (`src/dag/`) does not count, so upgrading polaris keeps caches.
 * Only normal forms and versions enter the hash, never paths: a moved checkout keeps its cache.
 */
import { readFileSync, statSync } from "node:fs"
import { dirname, extname, isAbsolute, join, resolve, sep } from "node:path"
import { fileURLToPath } from "node:url"
import type { Loader } from "esbuild"
import { sha256 } from "./Canonical.ts"
import { cached } from "./internal/contentCache.ts"
import { remembered } from "./Location.ts"
import { esbuild, esbuildVersion } from "./internal/esbuild.ts"

/** Normalises a `file://` URL or a path to an absolute path. */
export const toPath = (source: string): string => (source.startsWith("file:") ? fileURLToPath(source) : source)

// A stack frame's file, without the query string watch mode adds to re-import a changed module.
const THIS_FILE = fileURLToPath(import.meta.url)

const FRAME = /\(?((?:file:\/\/)?\/[^():?]+\.[cm]?[jt]sx?)(?:\?[^:)]*)?:\d+:\d+\)?\s*$/

const ignoredCallers = new Set<string>()

/** Frames of `file` are never a stage's: the prebuilt command's bundle, which holds the framework. */
export const ignoreCallerFrames = (file: string): void => {
  ignoredCallers.add(file)
}

/**
 * The file of the first stack frame outside `exclude`: where `Stage.make` was called from.
 * Stage authors never pass `import.meta.url` by hand, but may, to be explicit.
 */
export const callerFile = (exclude: ReadonlyArray<string>): string | undefined => {
  const stack = new Error().stack?.split("\n").slice(1) ?? []
  for (const line of stack) {
    const m = FRAME.exec(line)
    if (m === null) continue
    const file = toPath(m[1]!)
    if (file === THIS_FILE || exclude.includes(file) || ignoredCallers.has(file) || file.includes("/node_modules/")) continue
    return file
  }
  return undefined
}

const FRAMEWORK = dirname(THIS_FILE)

/**
 * The one framework rule: modules under `src/dag/` (this file's folder) are not part of any
 * stage's fingerprint, so upgrading the DAG engine does not invalidate a long run. Everything
 * else (`src/internal`, `src/data`, `src/model`, `src/engines`, user modules) is.
 */
export const isFramework = (file: string): boolean => file.startsWith(FRAMEWORK + sep)

/** The module behind `ctx.random` (the executor imports `seeded` from it). */
export const RANDOM_MODULE = fileURLToPath(new URL("../internal/random.ts", import.meta.url))

/**
 * Libraries whose code computes stage values (the ONNX runtime runs the model, the tokenizer
 * library turns text into ids, the template engine renders chat prompts): a new version can
 * change outputs, so the version a closure module imports enters the fingerprint.
 */
export const VALUE_LIBRARIES: ReadonlyArray<string> = ["onnxruntime-node", "@huggingface/tokenizers", "@huggingface/jinja"]

const LOADERS: Record<string, Loader> = {
  ".ts": "ts",
  ".mts": "ts",
  ".cts": "ts",
  ".tsx": "tsx",
  ".js": "js",
  ".mjs": "js",
  ".cjs": "js",
  ".jsx": "jsx"
}

/**
 * A module's normal form: esbuild's output without whitespace or comments (legal ones included);
 * type annotations, `import type`, `import { type X }` and imports used only as types are gone,
 * as they are when tsx runs the module. No `format` and no tsconfig: the module keeps its own
 * import syntax, and the result does not depend on where polaris runs. The esbuild version
 * (pinned exactly in package.json) is part of this normal form: upgrading it may re-run each
 * stage once. `undefined` for a file that is not JavaScript or TypeScript, or does not parse:
 * its raw bytes count instead.
 */
export const normalForm = (file: string, text: string): string | undefined => {
  const loader = LOADERS[extname(file)]
  if (loader === undefined) return undefined
  try {
    return esbuild().transformSync(text, { loader, minifyWhitespace: true, legalComments: "none", target: "es2023" }).code
  } catch {
    return undefined
  }
}

// The specifiers of the normal form's run-time imports. esbuild prints every static import and
// re-export as `import"x"`, `import…from"x"` or `export…from"x"`, a dynamic import as
// `import("x")`, a CommonJS one as `require("x")`. A string holding such text matches only if
// it also has no space before the quote; then the worst case is one module too many.
const IMPORT = /(?:\bfrom|\bimport\(?|\brequire\()"([^"\\]+)"/g

const isFile = (path: string): boolean => statSync(path, { throwIfNoEntry: false })?.isFile() ?? false

// `./x.ts` as written, or `./x.js` meaning `./x.ts` (TypeScript's convention).
const resolveModule = (from: string, specifier: string): string | undefined => {
  const path = specifier.startsWith("file:") ? fileURLToPath(specifier) : resolve(dirname(from), specifier)
  const candidates = [path, path.replace(/\.([cm]?)js$/, ".$1ts"), path.replace(/\.jsx$/, ".tsx")]
  return candidates.find(isFile)
}

// `name@version` of a value library as Node resolves it from `from`: the nearest
// node_modules/<name>/package.json up the tree (read directly: `exports` may hide it).
/** `name@version` of the package `name` as a module at `from` resolves it (`name@unresolved` if none). */
export const libraryVersion = (from: string, name: string): string => {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    const manifest = join(dir, "node_modules", name, "package.json")
    if (isFile(manifest)) return `${name}@${(JSON.parse(readFileSync(manifest, "utf8")) as { version?: string }).version ?? "?"}`
    if (dirname(dir) === dir) return `${name}@unresolved`
  }
}

const packageName = (specifier: string): string => specifier.split("/").slice(0, specifier.startsWith("@") ? 2 : 1).join("/")

interface Module {
  /** sha256 of the normal form (or of the raw bytes). */
  readonly digest: string
  /** Project modules imported at run time, framework excluded, resolved. */
  readonly imports: ReadonlyArray<string>
  /** `name@version` of each value library imported at run time. */
  readonly libraries: ReadonlyArray<string>
}

/** What a module's normal form gives a fingerprint: its digest and its run-time import specifiers. */
interface Normalized {
  readonly digest: string
  readonly specifiers: ReadonlyArray<string>
}

// Normal forms are a pure function of the esbuild version, the loader and the bytes, so their
// digests are kept on disk by that triple: a command that only plans (`polaris plan`, a cached
// run) then transpiles nothing it transpiled before.
const NORMAL_FORM_RULES = `esbuild@${esbuildVersion} minifyWhitespace legalComments=none es2023`

type Read = { readonly bytesDigest: string; readonly code: Normalized | undefined }

// A module is looked up by its file's identity (Location.remembered: one small read instead of
// the module and its normal form); otherwise read, and its normal form found by the digest of
// those very bytes, or made.
const normalized = (file: string): Read => {
  const loader = LOADERS[extname(file)]
  const memo = remembered<{ readonly bytesDigest: string; readonly code: Normalized | null }>("module-normal-forms", [file], { also: [NORMAL_FORM_RULES, loader ?? "raw"] })
  if (memo.known !== undefined) return { bytesDigest: memo.known.value.bytesDigest, code: memo.known.value.code ?? undefined }
  const bytes = readFileSync(file)
  const bytesDigest = sha256(bytes)
  const code = loader === undefined ? null : cached("normal-forms", [NORMAL_FORM_RULES, loader, bytesDigest], () => {
    const js = normalForm(file, bytes.toString("utf8"))
    return js === undefined ? null : { digest: sha256(js), specifiers: [...js.matchAll(IMPORT)].map((m) => m[1]!) }
  })
  memo.keep({ bytesDigest, code })
  return { bytesDigest, code: code ?? undefined }
}

const readModule = (file: string): Module => {
  const { bytesDigest, code } = normalized(file)
  if (code === undefined) return { digest: bytesDigest, imports: [], libraries: [] }
  const imports = new Set<string>()
  const libraries = new Set<string>()
  for (const specifier of code.specifiers) {
    if (specifier.startsWith(".") || isAbsolute(specifier) || specifier.startsWith("file:")) {
      const dep = resolveModule(file, specifier)
      if (dep !== undefined && !isFramework(dep)) imports.add(dep)
    } else if (VALUE_LIBRARIES.includes(packageName(specifier))) {
      libraries.add(libraryVersion(file, packageName(specifier)))
    }
  }
  return { digest: code.digest, imports: [...imports], libraries: [...libraries] }
}

// One read and one transpile per file per run: the modules of a run hang off its `cache`.
const modulesOf = new WeakMap<Map<string, string>, Map<string, Module>>()

const load = (cache: Map<string, string>, file: string): Module => {
  let modules = modulesOf.get(cache)
  if (modules === undefined) modulesOf.set(cache, (modules = new Map()))
  let m = modules.get(file)
  if (m === undefined) modules.set(file, (m = readModule(file)))
  return m
}

/**
 * What a fingerprint of `roots` covers: the files of their run-time closure (framework
 * excepted; roots first, the rest sorted) and the value libraries it imports (`name@version`,
 * sorted). For diagnostics and tests; the fingerprint hashes their normal forms, not their paths.
 */
export const closureOf = (roots: ReadonlyArray<string>, cache: Map<string, string>): { readonly files: ReadonlyArray<string>; readonly libraries: ReadonlyArray<string> } => {
  const seen = new Set<string>(roots)
  const queue = [...roots]
  const libraries = new Set<string>()
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    const m = load(cache, file)
    for (const library of m.libraries) libraries.add(library)
    for (const dep of m.imports) {
      if (!seen.has(dep)) {
        seen.add(dep)
        queue.push(dep)
      }
    }
  }
  const rest = [...seen].filter((f) => !roots.includes(f)).sort()
  return { files: [...roots, ...rest], libraries: [...libraries].sort() }
}

const fingerprintRoots = (roots: ReadonlyArray<string>, cache: Map<string, string>): string => {
  const cacheKey = roots.join("\0")
  let fp = cache.get(cacheKey)
  if (fp !== undefined) return fp
  const { files, libraries } = closureOf(roots, cache)
  // The first root, then the other digests sorted, then the libraries: paths and the order of
  // discovery never enter.
  const [root, ...rest] = files.map((f) => load(cache, f).digest)
  fp = sha256([root!, ...rest.sort(), ...libraries].join("\n"))
  cache.set(cacheKey, fp)
  return fp
}

/**
 * The fingerprint of a module's run-time closure: sha256 over the normal form of `path`, the
 * normal forms of the project modules it imports at run time, transitively (framework
 * excepted), and the versions of the value libraries they import. Memoised in `cache`.
 */
export const fingerprintFile = (path: string, cache: Map<string, string>): string => fingerprintRoots([path], cache)

/**
 * A stage's source fingerprint: its module's closure plus the closure of the `ctx.random`
 * module (`random`, injectable for tests), which every stage uses whether or not it imports it.
 * Memoised in `cache` (one per run).
 */
export const fingerprintStage = (path: string, cache: Map<string, string>, random: string = RANDOM_MODULE): string =>
  fingerprintRoots(path === random ? [path] : [path, random], cache)

const codeCache = new Map<string, string>()

/**
 * The fingerprint of the code behind a service that computes values in this process (the
 * embedded policy, the proxy judge): its module's run-time closure, as for a stage. Engines put
 * it in their own `fingerprint`, since a stage reaches an engine through its service key only.
 *
 * @example
 * fingerprint: `embedded:${weightsDigest}@${codeFingerprint(import.meta.url).slice(0, 12)}`
 */
export const codeFingerprint = (moduleUrl: string): string => fingerprintFile(toPath(moduleUrl), codeCache)
