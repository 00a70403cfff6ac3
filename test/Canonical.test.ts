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

  it("writes what a plain sort-every-object reference writes, on 2,000 random values (keys in and out of order, integer-like keys, -0, undefined, secrets, nesting)", () => {
    // The reference: a fresh object per level with its keys inserted in sorted order, every time.
    const reference = (v: unknown): unknown => {
      if (Redacted.isRedacted(v) || v === undefined) return undefined
      if (typeof v === "number") return Object.is(v, -0) ? 0 : v
      if (Array.isArray(v)) return v.map((x) => reference(x) ?? null)
      if (v !== null && typeof v === "object") {
        const out: Record<string, unknown> = {}
        for (const k of Object.keys(v).sort()) {
          const r = reference((v as Record<string, unknown>)[k])
          if (r !== undefined) out[k] = r
        }
        return out
      }
      return v
    }
    // mulberry32: integer arithmetic only, so every bit of the state is exact.
    let seed = 7
    const rand = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
      return ((t ^ (t >>> 14)) >>> 0) % n
    }
    let unsorted = 0
    let sorted = 0
    const KEYS = ["a", "b", "c", "z", "10", "2", "0", "a_b", "B", "\u00e9"]
    const value = (depth: number): unknown => {
      switch (rand(depth > 3 ? 6 : 9)) {
        case 0: return rand(2) === 0 ? -0 : rand(1000) - 500
        case 1: return ["x", "", "é"][rand(3)]
        case 2: return [true, false, null][rand(3)]
        case 3: return undefined
        case 4: return Redacted.make("secret")
        case 5: return rand(7) / 8
        case 6: return Array.from({ length: rand(4) }, () => value(depth + 1))
        default: {
          const o: Record<string, unknown> = {}
          const ks = Array.from({ length: rand(5) }, () => KEYS[rand(KEYS.length)]!)
          if (rand(2) === 0) ks.sort()
          for (const k of ks) o[k] = value(depth + 1)
          if (Object.keys(o).join() !== Object.keys(o).sort().join()) unsorted++
          else if (ks.length > 1) sorted++
          return o
        }
      }
    }
    for (let i = 0; i < 2000; i++) {
      const v = value(0)
      const before = JSON.stringify(v)
      expect(canonicalJson(v)).toBe(JSON.stringify(reference(v) ?? null))
      // The value itself is never changed.
      expect(JSON.stringify(v)).toBe(before)
    }
    // Both kinds were met: objects with their keys in order and out of it.
    expect(unsorted).toBeGreaterThan(100)
    expect(sorted).toBeGreaterThan(100)
  })
})
