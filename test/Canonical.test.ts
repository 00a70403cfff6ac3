/**
 * Canonical JSON, the bytes every key hashes: object keys sorted, `undefined` dropped, -0 written
 * as 0 (in objects and inside arrays of scalars alike), and a value with no stable form refused
 * with the path where it sits, never hashed as something else.
 */
import { Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { canonicalJson, digest, UnhashableValue } from "../src/dag/Canonical.ts"

describe("canonicalJson", () => {
  it("sorts keys at every depth, drops undefined, writes -0 as 0", () => {
    expect(canonicalJson({ b: 1, a: { d: [3, -0, "x", null, true], c: undefined } })).toBe('{"a":{"d":[3,0,"x",null,true]},"b":1}')
    expect(canonicalJson([{ y: -0, x: 1 }, [-0]])).toBe('[{"x":1,"y":0},[0]]')
    expect(digest({ a: [1, 2], b: "s" })).toBe(digest({ b: "s", a: [1, 2] }))
  })

  it("refuses non-finite numbers and class instances with their path", () => {
    const at = (f: () => unknown) => {
      try {
        f()
      } catch (e) {
        return e instanceof UnhashableValue ? e.path : "not UnhashableValue"
      }
      return "no error"
    }
    expect(at(() => canonicalJson({ ppo: [{ advantages: [0.5, Number.NaN] }] }))).toBe("ppo[0].advantages[1]")
    expect(at(() => canonicalJson({ xs: [1, Infinity] }))).toBe("xs[1]")
    expect(at(() => canonicalJson({ t: [new Float32Array(2)] }))).toBe("t[0]")
  })

  it("drops or masks secrets, also inside arrays", () => {
    const key = Redacted.make("sk-1", { label: "KEY" })
    expect(canonicalJson({ headers: [key, "a"] })).toBe('{"headers":[null,"a"]}')
    expect(canonicalJson({ headers: [key] }, "mask")).toBe('{"headers":["${KEY}"]}')
  })
})
