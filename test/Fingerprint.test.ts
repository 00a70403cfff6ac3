/** Source fingerprints: what runs counts (ARCHITECTURE.md §5, exactness rules), nothing else does. */
import { cpSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { describe, expect, it } from "vitest"
import { closureOf, fingerprintFile, fingerprintStage, isFramework, normalForm, RANDOM_MODULE } from "../src/dag/Fingerprint.ts"

const REPO = join(import.meta.dirname, "..")

/** Writes `files` (relative path → text) under a fresh temp folder and returns the folder. */
const tree = (files: Record<string, string>, dir = mkdtempSync(join(tmpdir(), "polaris-fp-"))): string => {
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(dirname(join(dir, path)), { recursive: true })
    writeFileSync(join(dir, path), text)
  }
  return dir
}

// A fresh cache each time: a cache holds one run's reads.
const fp = (file: string) => fingerprintFile(file, new Map())
const files = (file: string) => closureOf([file], new Map()).files

const HELPER = 'export const scale = (x: number): number => x * 2\n'
const STAGE = `import { scale } from "./helper.ts"

export const run = (xs: ReadonlyArray<number>): Array<number> => xs.map((x) => scale(x) + 1)
`

describe("normal form", () => {
  it("esbuild drops `import type`, `import { type X }` and imports used only as types, keeps the rest", () => {
    const code = [
      'import type { A } from "./a.ts"',
      'import { type B } from "./b.ts"',
      'import { C } from "./c.ts"',
      'import { D, type E } from "./d.ts"',
      'import "./side.ts"',
      'export { F } from "./f.ts"',
      "export const g = (x: C): A => D(x as B) as E",
      'export const h = () => import("./h.ts")'
    ].join("\n")
    // Pinned output of esbuild 0.28.2: a new esbuild that prints differently changes fingerprints.
    expect(normalForm("m.ts", code)).toBe(
      'import{D}from"./d.ts";import"./side.ts";export{F}from"./f.ts";export const g=x=>D(x);export const h=()=>import("./h.ts");\n'
    )
  })

  it("is the same for a comment-only edit, and for whitespace and quote style", () => {
    const a = normalForm("m.ts", "export const f = (x: number) => { return [x, 2, \"a\"] }\n")
    expect(a).toBe('export const f=x=>{return[x,2,"a"]};\n')
    expect(normalForm("m.ts", "/** doc */\nexport const f = (x: number): Array<number | string> => {\n  // why\n  return [\n    x,\n    2,\n    'a',\n  ];\n};\n/*! legal */\n")).toBe(a)
  })

  it("is undefined for a file that is not JavaScript or TypeScript, or does not parse", () => {
    expect(normalForm("stage.py", "print(1)\n")).toBeUndefined()
    expect(normalForm("stage.ts", "export const = \n")).toBeUndefined()
  })
})

describe("fingerprintFile", () => {
  it("a comment-only edit keeps the fingerprint", () => {
    const dir = tree({ "helper.ts": HELPER, "stage.ts": STAGE })
    const before = fp(join(dir, "stage.ts"))
    tree({ "stage.ts": `/** The stage. */\n${STAGE}// trailing note\n/*! license */\n`, "helper.ts": `${HELPER}/* block */\n` }, dir)
    expect(fp(join(dir, "stage.ts"))).toBe(before)
  })

  it("reformatting (indentation, blank lines, semicolons, quotes, trailing commas) keeps the fingerprint", () => {
    const dir = tree({ "helper.ts": HELPER, "stage.ts": STAGE })
    const before = fp(join(dir, "stage.ts"))
    tree({ "stage.ts": "import {scale} from './helper.ts';\n\n\nexport const run = (\n  xs: ReadonlyArray<number>,\n): Array<number> =>\n    xs.map(x => scale(x) + 1);\n" }, dir)
    expect(fp(join(dir, "stage.ts"))).toBe(before)
  })

  it("a type-only import pulls nothing in: adding one keeps the fingerprint, and that module's edits do not matter", () => {
    const dir = tree({
      "helper.ts": HELPER,
      "stage.ts": `${STAGE}export const typed = (r: any, s: any, b: any) => r.x + s.x + b.v\n`,
      "types.ts": "export interface Row { x: number }\nexport const unused = 1\n",
      "cls.ts": "export class Box { v = 1 }\n"
    })
    const stage = join(dir, "stage.ts")
    const before = fp(stage)
    // `import type`, `import { type X }`, and a class imported but used only as a type.
    tree({
      "stage.ts": `import type { Row } from "./types.ts"\nimport { type Row as R2 } from "./types.ts"\nimport { Box } from "./cls.ts"\n${STAGE}export const typed = (r: Row, s: R2, b: Box): number => r.x + s.x + b.v\n`
    }, dir)
    expect(fp(stage)).toBe(before)
    expect(files(stage)).toEqual([stage, join(dir, "helper.ts")])
    tree({ "types.ts": "export interface Row { x: number; y: string }\nexport const unused = 2\n", "cls.ts": "export class Box { v = 2 }\n" }, dir)
    expect(fp(stage)).toBe(before)
  })

  it("editing a module imported at run time, directly or transitively, changes the fingerprint", () => {
    const dir = tree({
      "stage.ts": 'import { scale } from "./helper.ts"\nimport "./side.ts"\nexport { k } from "./reexport.ts"\nexport const lazy = () => import("./lazy.ts")\nexport const run = (x: number) => scale(x)\n',
      "helper.ts": 'import { base } from "./deep/base.js"\nexport const scale = (x: number) => x * base\n',
      "deep/base.ts": "export const base = 2\n",
      "side.ts": "globalThis.flag = 1\n",
      "reexport.ts": "export const k = 1\n",
      "lazy.ts": "export const l = 1\n"
    })
    const stage = join(dir, "stage.ts")
    expect(files(stage).map((f) => f.slice(dir.length + 1))).toEqual(["stage.ts", "deep/base.ts", "helper.ts", "lazy.ts", "reexport.ts", "side.ts"])
    const seen = new Set([fp(stage)])
    for (const [file, text] of [
      ["helper.ts", 'import { base } from "./deep/base.js"\nexport const scale = (x: number) => x * base + 1\n'],
      ["deep/base.ts", "export const base = 3\n"],
      ["side.ts", "globalThis.flag = 2\n"],
      ["reexport.ts", "export const k = 2\n"],
      ["lazy.ts", "export const l = 2\n"]
    ] as const) {
      tree({ [file]: text }, dir)
      const next = fp(stage)
      expect(seen.has(next), file).toBe(false)
      seen.add(next)
    }
  })

  it("only normal forms enter, never paths: the same tree in another folder has the same fingerprint", () => {
    const dir = tree({ "helper.ts": HELPER, "stage.ts": STAGE })
    const moved = join(mkdtempSync(join(tmpdir(), "polaris-fp-moved-")), "deeper", "checkout")
    cpSync(dir, moved, { recursive: true })
    expect(fp(join(moved, "stage.ts"))).toBe(fp(join(dir, "stage.ts")))
  })

  it("a file that is not a module counts by its bytes: any edit re-runs", () => {
    const dir = tree({ "stage.py": "# a comment\nprint(1)\n" })
    const before = fp(join(dir, "stage.py"))
    tree({ "stage.py": "# another comment\nprint(1)\n" }, dir)
    expect(fp(join(dir, "stage.py"))).not.toBe(before)
  })

  it("is memoised per run: one cache reads each file once", () => {
    const dir = tree({ "helper.ts": HELPER, "stage.ts": STAGE, "other.ts": 'import { scale } from "./helper.ts"\nexport const y = scale(3)\n' })
    const cache = new Map<string, string>()
    const stage = fingerprintFile(join(dir, "stage.ts"), cache)
    tree({ "helper.ts": "export const scale = (x: number): number => x * 3\n" }, dir)
    expect(fingerprintFile(join(dir, "stage.ts"), cache)).toBe(stage)
    // other.ts is read now, but helper.ts was read earlier in this run: the old helper counts.
    const otherInRun = fingerprintFile(join(dir, "other.ts"), cache)
    tree({ "helper.ts": HELPER }, dir)
    expect(fp(join(dir, "other.ts"))).toBe(otherInRun)
    expect(fp(join(dir, "stage.ts"))).toBe(stage)
  })
})

describe("the framework rule", () => {
  it("excludes exactly the files under the real src/dag/", () => {
    expect(isFramework(join(REPO, "src/dag/Stage.ts"))).toBe(true)
    expect(isFramework(join(REPO, "src/dag/internal/x.ts"))).toBe(true)
    expect(isFramework(join(REPO, "src/internal/random.ts"))).toBe(false)
    expect(isFramework(join(REPO, "src/data/Sampler.ts"))).toBe(false)
    expect(isFramework(join(REPO, "src/index.ts"))).toBe(false)
    expect(isFramework(join(REPO, "src/dagger/x.ts"))).toBe(false)
    expect(isFramework(join(tmpdir(), "project/src/dag/Stage.ts"))).toBe(false)
  })

  it("a stage importing framework modules reaches none of them; a domain module under src/ is reached", () => {
    const dir = tree({
      "stage.ts": `import * as Stage from "${join(REPO, "src/dag/Stage.ts")}"\nimport { seeded } from "${join(REPO, "src/internal/random.ts")}"\nexport const s = [Stage, seeded]\n`
    })
    expect(files(join(dir, "stage.ts"))).toEqual([join(dir, "stage.ts"), join(REPO, "src/internal/random.ts")])
  })
})

describe("fingerprintStage", () => {
  it("covers the ctx.random module even when the stage does not import it", () => {
    const dir = tree({ "helper.ts": HELPER, "stage.ts": STAGE, "rng.ts": "export const seeded = (s: string) => () => s.length / 10\n" })
    const stage = join(dir, "stage.ts"), rng = join(dir, "rng.ts")
    const before = fingerprintStage(stage, new Map(), rng)
    expect(before).not.toBe(fp(stage))
    tree({ "rng.ts": "export const seeded = (s: string) => () => s.length / 100\n" }, dir)
    expect(fingerprintStage(stage, new Map(), rng)).not.toBe(before)
    expect(fingerprintFile(stage, new Map())).toBe(fp(stage))
  })

  it("defaults to the executor's RNG module, src/internal/random.ts", () => {
    expect(RANDOM_MODULE).toBe(join(REPO, "src/internal/random.ts"))
    expect(readFileSync(join(REPO, "src/dag/Executor.ts"), "utf8")).toContain('import { seeded } from "../internal/random.ts"')
    const dir = tree({ "stage.ts": STAGE, "helper.ts": HELPER })
    expect(fingerprintStage(join(dir, "stage.ts"), new Map())).toBe(fingerprintStage(join(dir, "stage.ts"), new Map(), RANDOM_MODULE))
    expect(closureOf([join(dir, "stage.ts"), RANDOM_MODULE], new Map()).files).toContain(RANDOM_MODULE)
  })
})

describe("value libraries", () => {
  const library = (version: string) =>
    JSON.stringify({ name: "@huggingface/tokenizers", version, exports: { ".": { import: "./dist/tokenizers.mjs" } } })

  it("the resolved version of a value library imported at run time enters; another version changes the fingerprint", () => {
    const dir = tree({
      "node_modules/@huggingface/tokenizers/package.json": library("0.2.0"),
      "src/tok.ts": 'import { Tokenizer } from "@huggingface/tokenizers"\nexport const make = (json: object) => new Tokenizer(json, {})\n',
      "stage.ts": 'import { make } from "./src/tok.ts"\nexport const run = () => make({})\n'
    })
    const stage = join(dir, "stage.ts")
    expect(closureOf([stage], new Map()).libraries).toEqual(["@huggingface/tokenizers@0.2.0"])
    const before = fp(stage)
    tree({ "node_modules/@huggingface/tokenizers/package.json": library("0.3.0") }, dir)
    expect(fp(stage)).not.toBe(before)
    // Resolved from the importing module: a nearer node_modules wins.
    tree({ "src/node_modules/@huggingface/tokenizers/package.json": library("0.2.1") }, dir)
    expect(closureOf([stage], new Map()).libraries).toEqual(["@huggingface/tokenizers@0.2.1"])
  })

  it("a type-only import of a library, or a library off the list, adds nothing", () => {
    const dir = tree({
      "node_modules/onnxruntime-node/package.json": JSON.stringify({ name: "onnxruntime-node", version: "1.30.0" }),
      "node_modules/yaml/package.json": JSON.stringify({ name: "yaml", version: "2.9.1" }),
      "stage.ts": 'import type { InferenceSession } from "onnxruntime-node"\nimport { parse } from "yaml"\nexport const run = (s: InferenceSession | undefined) => parse(String(s))\n'
    })
    expect(closureOf([join(dir, "stage.ts")], new Map()).libraries).toEqual([])
  })

  it("the repository's tokenizer and template modules resolve the installed versions", () => {
    const pkg = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as { dependencies: Record<string, string> }
    const dir = tree({
      "stage.ts": `import { Tokenizer } from "${join(REPO, "src/model/tokenizer/Tokenizer.ts")}"\nimport * as ChatTemplate from "${join(REPO, "src/model/tokenizer/ChatTemplate.ts")}"\nexport const s = [Tokenizer, ChatTemplate]\n`
    })
    expect(closureOf([join(dir, "stage.ts")], new Map()).libraries).toEqual([
      `@huggingface/jinja@${pkg.dependencies["@huggingface/jinja"]}`,
      `@huggingface/tokenizers@${pkg.dependencies["@huggingface/tokenizers"]}`
    ])
  })
})
