/**
 * How the prebuilt command (scripts/build-cli.mjs) imports a recipe's modules without a
 * TypeScript loader. Built-in and repository modules are the bundle's own instances; a user's
 * `.ts` file (a pipeline, a custom stage) is transpiled with esbuild and evaluated in place, its
 * imports of `polaris`, `effect` and the repository answered by the bundle, so that there is one
 * instance of each module in the process (a second copy of effect or of the framework would not
 * recognise the first's values). What the bundle cannot answer raises `NeedsSources` before
 * anything was written: top-level await, a dynamic import, an effect entry point it does not
 * carry, any of effect in the lean bundle, a member of effect the core bundle does not carry (or
 * a read of effect its code does not show). `bin/polaris.js` then runs the next bundle (core,
 * full), or the TypeScript sources through tsx.
 *
 * The module keeps its own file name, so `Stage.make` finds its source in the stack as under tsx,
 * and `import.meta.url`, `dirname` and `filename` are its own.
 */
import { readFileSync, statSync } from "node:fs"
import Module, { createRequire } from "node:module"
import { dirname, extname, isAbsolute, relative, resolve, sep } from "node:path"
import { fileURLToPath, pathToFileURL } from "node:url"
import vm from "node:vm"
import { cached } from "../dag/internal/contentCache.ts"
import { esbuild, esbuildVersion } from "../dag/internal/esbuild.ts"
import { ignoreCallerFrames } from "../dag/Fingerprint.ts"
import { NeedsSources } from "../dag/PipelineModule.ts"

/** What the bundle carries, as loaders of module namespaces. */
export interface Carried {
  /** The repository root (absolute). */
  readonly root: string
  /** Repository modules by their path from the root (`stages/judge.ts`). */
  readonly files: Readonly<Record<string, () => Record<string, unknown>>>
  /** Packages by specifier (`polaris`, `effect`, `effect/http`...). */
  readonly packages: Readonly<Record<string, () => Record<string, unknown>>>
  /** Packages whose namespace carries only these members. */
  readonly partial: Readonly<Record<string, ReadonlyArray<string>>>
}

const TYPESCRIPT = new Set([".ts", ".mts", ".cts", ".tsx"])

const literal = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")

/**
 * Whether `code`, a module esbuild compiled to CommonJS, reads package `name` only through
 * `members`. esbuild binds each import of it to a variable (`var import_effect = require("effect")`,
 * `var E = __toESM(require("effect"))`) and reads a member at each use (`import_effect.Schema`).
 * Any other use of the package or of such a variable (`E[key]`, `E` passed along, `export * from`,
 * a dynamic import) cannot be checked from the text, so the answer is no.
 */
export const readsOnly = (code: string, name: string, members: ReadonlyArray<string>): boolean => {
  const required = `require(${JSON.stringify(name)})`
  const bindings = [...code.matchAll(new RegExp(`var ([\\w$]+) = (?:__toESM\\()?${literal(required)}`, "g"))].map((m) => m[1]!)
  if (code.split(required).length - 1 !== bindings.length) return false
  return bindings.every((binding) =>
    // Not a property named so, nor a string's first word (`require("effect")` itself).
    [...code.matchAll(new RegExp(`(?<![\\w$."'\`])${literal(binding)}(?![\\w$])(?:\\.([\\w$]+))?`, "g"))].every((use) =>
      use[1] !== undefined ? members.includes(use[1]) : code.startsWith(`var ${binding} = `, use.index - "var ".length)))
}

// `./x.ts` as written, or `./x.js` meaning `./x.ts` (TypeScript's convention).
const candidates = (path: string) => [path, path.replace(/\.([cm]?)js$/, ".$1ts"), path.replace(/\.jsx$/, ".tsx")]

/** An importer of absolute file paths, for `PipelineModule.useImporter`. */
export const importer = (carried: Carried) => {
  // Inside the bundle (CommonJS) `__filename` is the bundle: its frames, Stage.make's among them,
  // are never where a user's stage was defined.
  ignoreCallerFrames(__filename)
  const evaluated = new Map<string, { exports: Record<string, unknown> }>()
  const carriedFile = (path: string) => {
    const rel = relative(carried.root, path).split(sep).join("/")
    return carried.files[rel]
  }

  const load = (file: string): Record<string, unknown> => {
    const own = carriedFile(file)
    if (own !== undefined) return own()
    const done = evaluated.get(file)
    if (done !== undefined) return done.exports
    if (!TYPESCRIPT.has(extname(file))) return createRequire(file)(file) as Record<string, unknown>
    const url = pathToFileURL(file).href
    let code: string
    try {
      const options = {
        loader: extname(file) === ".tsx" ? "tsx" as const : "ts" as const,
        format: "cjs" as const,
        target: "node20",
        sourcefile: file,
        define: {
          "import.meta.url": JSON.stringify(url),
          "import.meta.dirname": JSON.stringify(dirname(file)),
          "import.meta.filename": JSON.stringify(file)
        }
      }
      const bytes = readFileSync(file)
      // The transpiled module is a function of the bytes, the options and esbuild's version.
      code = cached("cjs-modules", [`esbuild@${esbuildVersion}`, JSON.stringify(options), bytes], () => esbuild().transformSync(bytes.toString("utf8"), options).code)
    } catch (e) {
      // Top-level await and other module-only syntax: tsx runs it as a module.
      if (/top-level await|not supported with the "cjs" output format/i.test(String(e))) throw new NeedsSources({ file })
      throw e
    }
    // A dynamic import has no loader inside vm.Script (it would fail when it runs, not here).
    if (/(?<![\w$.])import\(/.test(code)) throw new NeedsSources({ file })
    for (const [name, members] of Object.entries(carried.partial)) {
      if (!readsOnly(code, name, members)) throw new NeedsSources({ file })
    }
    const module = { exports: {} as Record<string, unknown> }
    evaluated.set(file, module)
    const fallback = createRequire(file)
    const require = (specifier: string): unknown => {
      if (specifier.startsWith("node:") || Module.isBuiltin(specifier)) return fallback(specifier)
      if (specifier === "polaris") return carried.packages["polaris"]!()
      if (specifier.startsWith("polaris/")) {
        const own = carried.files[specifier.slice("polaris/".length)]
        if (own === undefined) throw new NeedsSources({ file })
        return own()
      }
      if (specifier.startsWith(".") || isAbsolute(specifier) || specifier.startsWith("file:")) {
        const path = specifier.startsWith("file:") ? fileURLToPath(specifier) : resolve(dirname(file), specifier)
        const found = candidates(path).find((p) => carriedFile(p) !== undefined || evaluated.has(p) || isFile(p))
        if (found === undefined) return fallback(specifier)
        return load(found)
      }
      const carriedPackage = carried.packages[specifier]
      if (carriedPackage !== undefined) return carriedPackage()
      // An entry point of effect the bundle does not carry would be a second instance of effect.
      if (specifier === "effect" || specifier.startsWith("effect/") || specifier.startsWith("@effect/")) throw new NeedsSources({ file })
      return fallback(specifier)
    }
    try {
      new vm.Script(Module.wrap(code), { filename: file }).runInThisContext()(module.exports, require, module, file, dirname(file))
    } catch (e) {
      evaluated.delete(file)
      throw e
    }
    return module.exports
  }

  return (file: string): Promise<Record<string, unknown>> => new Promise((ok) => ok(load(file)))
}

const isFile = (path: string): boolean => statSync(path, { throwIfNoEntry: false })?.isFile() ?? false
