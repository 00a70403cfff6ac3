/**
 * The core bundle's check of a user's module (src/cli/BundledImporter.ts, readsOnly): the module
 * as esbuild compiles it reads effect only through members the bundle carries, or it is handed to
 * the full bundle. Run on esbuild's real output for each form of import.
 */
import { describe, expect, it } from "vitest"
import { readsOnly } from "../src/cli/BundledImporter.ts"
import { esbuild } from "../src/dag/internal/esbuild.ts"

const CORE = ["Context", "Data", "Duration", "Effect", "Layer", "Schema"]
const compiled = (lines: ReadonlyArray<string>) => esbuild().transformSync(lines.join("\n"), { loader: "ts", format: "cjs", target: "node20" }).code
const check = (...lines: ReadonlyArray<string>) => readsOnly(compiled(lines), "effect", CORE)

describe("readsOnly (which user's modules the core bundle runs)", () => {
  it("accepts named imports, namespace imports read by member, re-exports and types of carried members", () => {
    expect(check(`import { Effect, Schema } from "effect"`, `export const a = Effect.succeed(Schema.Number)`)).toBe(true)
    expect(check(`import * as E from "effect"`, `export const a = E.Effect.void`, `export const b = E.Schema.String`)).toBe(true)
    expect(check(`import { Duration as D } from "effect"`, `export const a = D.seconds(1)`)).toBe(true)
    expect(check(`export { Layer, Context } from "effect"`)).toBe(true)
    // Types are erased: reading one names no member at run time.
    expect(check(`import { Effect, type Stream } from "effect"`, `export const a = (s: Stream.Stream<number>) => Effect.succeed(s)`)).toBe(true)
    expect(check(`export const a = 1`)).toBe(true)
    // A namespace named as the package: its name inside \`require("effect")\` is no read.
    expect(check(`import * as effect from "effect"`, `export const a = effect.Effect.void`, `export const id = "effect"`)).toBe(true)
  })

  it("refuses a member it does not carry, and any read it cannot see from the text", () => {
    expect(check(`import { Effect, Stream } from "effect"`, `export const a = Effect.succeed(Stream.make(1))`)).toBe(false)
    expect(check(`import * as E from "effect"`, `export const a = E.Stream.make(1)`)).toBe(false)
    expect(check(`import * as E from "effect"`, `export const a = (k: string) => (E as any)[k]`)).toBe(false)
    expect(check(`import * as E from "effect"`, `export const a = E`)).toBe(false)
    expect(check(`import * as E from "effect"`, `export const a = E?.Effect`)).toBe(false)
    expect(check(`export * from "effect"`)).toBe(false)
    expect(check(`import { Option } from "effect"`, `export const a = Option.none()`)).toBe(false)
  })

  it("checks the package it is asked about, and no other", () => {
    const code = compiled([`import { Stream } from "effect"`, `import { Effect } from "polaris-not-effect"`, `export const a = [Stream, Effect]`])
    expect(readsOnly(code, "effect", CORE)).toBe(false)
    expect(readsOnly(code, "effect", [...CORE, "Stream"])).toBe(true)
    expect(readsOnly(code, "polaris-not-effect", ["Effect"])).toBe(true)
  })
})
