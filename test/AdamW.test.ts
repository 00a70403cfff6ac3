/**
 * AdamW against numbers worked out by hand (arithmetic in the comments), clipping, the decay
 * predicate, state checkpointing through Safetensors, convergence on a quadratic, and lrAt.
 */
import { describe, expect, it } from "vitest"
import { AdamW, defaultAdamParams, type AdamParams } from "../src/model/AdamW.ts"
import { lrAt, type LrSchedule } from "../src/model/LrSchedule.ts"
import * as Safetensors from "../src/model/Safetensors.ts"

const f32 = (...xs: Array<number>) => Float32Array.from(xs)
const torchLike: AdamParams = { learningRate: 0.1, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01, gradClipNorm: 0 }

describe("AdamW", () => {
  it("has Tinker's defaults", () => {
    expect(defaultAdamParams).toEqual({ learningRate: 1e-4, beta1: 0.9, beta2: 0.95, eps: 1e-12, weightDecay: 0, gradClipNorm: 0 })
  })

  it("matches a hand-computed scalar over two steps", () => {
    const opt = new AdamW(new Map([["p", 1]]))
    const p = f32(1)
    const g = f32(0.5)
    // Step 1 (t = 1):
    //   m = 0.1·0.5 = 0.05;  v = 0.001·0.25 = 0.00025
    //   m̂ = 0.05/(1-0.9) = 0.5;  v̂ = 0.00025/(1-0.999) = 0.25;  √v̂ = 0.5
    //   decay: p = 1 - 0.1·0.01·1 = 0.999
    //   adam:  p = 0.999 - 0.1·0.5/(0.5+1e-8) = 0.999 - 0.099999998 = 0.899000002
    const r1 = opt.step(new Map([["p", p]]), new Map([["p", g]]), torchLike)
    expect(r1).toEqual({ gradNorm: 0.5, clipScale: 1, step: 1 })
    expect(p[0]).toBeCloseTo(0.899000002, 6)
    // Step 2 (t = 2):
    //   m = 0.9·0.05 + 0.1·0.5 = 0.095;  v = 0.999·0.00025 + 0.001·0.25 = 0.00049975
    //   m̂ = 0.095/(1-0.81) = 0.095/0.19 = 0.5;  v̂ = 0.00049975/(1-0.998001) = 0.00049975/0.001999 = 0.25
    //   decay: p = 0.899000002·(1 - 0.001) = 0.898101002
    //   adam:  p = 0.898101002 - 0.099999998 = 0.798101004
    const r2 = opt.step(new Map([["p", p]]), new Map([["p", g]]), torchLike)
    expect(r2.step).toBe(2)
    expect(opt.stepCount).toBe(2)
    expect(p[0]).toBeCloseTo(0.798101004, 6)
    const { tensors } = opt.state()
    expect(tensors["m.p"]!.data[0]).toBeCloseTo(0.095, 8)
    expect(tensors["v.p"]!.data[0]).toBeCloseTo(0.00049975, 10)
    // The gradient is only read.
    expect(g[0]).toBe(0.5)
  })

  it("clips the global norm like clip_grad_norm_ and reports the norm before clipping", () => {
    const sizes = new Map([["a", 1], ["b", 1]])
    const opt = new AdamW(sizes)
    const params = new Map([["a", f32(0)], ["b", f32(0)]])
    const grads = new Map([["a", f32(3)], ["b", f32(4)]])
    // ‖g‖ = √(9+16) = 5 > 1, so scale = 1/(5 + 1e-6) = 0.19999996.
    const r = opt.step(params, grads, { ...torchLike, weightDecay: 0, eps: 0, gradClipNorm: 1 })
    expect(r.gradNorm).toBe(5)
    expect(r.clipScale).toBeCloseTo(1 / (5 + 1e-6), 12)
    // Moments see the clipped gradient: m_a = 0.1·3·0.2 = 0.06, v_b = 0.001·(4·0.2)² = 0.00064.
    const { tensors } = opt.state()
    expect(tensors["m.a"]!.data[0]).toBeCloseTo(0.06, 7)
    expect(tensors["v.b"]!.data[0]).toBeCloseTo(0.00064, 9)
    // The first Adam step is lr·sign(g) whatever the scale (m̂/√v̂ = g/|g|): p = -0.1.
    expect(params.get("a")![0]).toBeCloseTo(-0.1, 6)
    expect(params.get("b")![0]).toBeCloseTo(-0.1, 6)
    expect(grads.get("a")![0]).toBe(3)
    // Below the threshold, or with clipping off, the scale is 1 and the norm is still reported.
    expect(opt.step(params, grads, { ...torchLike, gradClipNorm: 10 }).clipScale).toBe(1)
    expect(opt.step(params, grads, { ...torchLike, gradClipNorm: 0 })).toEqual({ gradNorm: 5, clipScale: 1, step: 3 })
  })

  it("applies decoupled weight decay only where the predicate says", () => {
    const opt = new AdamW(new Map([["w", 2], ["bias", 1]]), { decay: (n) => n !== "bias" })
    const w = f32(1, -2)
    const bias = f32(1)
    // Zero gradient: m = v = 0, the Adam term is 0/(0+eps) = 0, so only decay moves p:
    // p ← p·(1 - lr·wd) = p·(1 - 0.1·0.5) = 0.95·p.
    opt.step(new Map([["w", w], ["bias", bias]]), new Map([["w", f32(0, 0)], ["bias", f32(0)]]), { ...torchLike, weightDecay: 0.5 })
    expect(Array.from(w)).toEqual([Math.fround(0.95), Math.fround(-1.9)])
    expect(bias[0]).toBe(1)
  })

  it("resumes identically from state saved through Safetensors", () => {
    const sizes = new Map([["layer.w", 5], ["layer.b", 2], ["empty", 0]])
    let seed = 7
    const rand = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 1664525 + 1013904223) % 4294967296) / 4294967296) * 2 - 1)
    const gradsAt = () => new Map([...sizes].map(([k, n]) => [k, rand(n)] as const))
    const hp = { ...defaultAdamParams, learningRate: 0.01, weightDecay: 0.1, gradClipNorm: 0.5 }
    const decay = (n: string) => !n.endsWith(".b")
    const a = new AdamW(sizes, { decay })
    const pa = new Map([...sizes].map(([k, n]) => [k, rand(n)] as const))
    for (let i = 0; i < 3; i++) a.step(pa, gradsAt(), hp)

    const saved = a.state()
    expect(saved.metadata).toEqual({ adamw_step: "3" })
    const b = AdamW.fromState(sizes, Safetensors.decode(Safetensors.encode(saved.tensors, saved.metadata)), { decay })
    expect(b.stepCount).toBe(3)
    const pb = new Map([...pa].map(([k, v]) => [k, v.slice()] as const))
    const g = gradsAt()
    expect(b.step(pb, g, hp)).toEqual(a.step(pa, g, hp))
    for (const [k, v] of pa) expect(Array.from(pb.get(k)!)).toEqual(Array.from(v))
    expect(b.state()).toEqual(a.state())
    // The snapshot taken before the last step did not move with it.
    expect(saved.metadata["adamw_step"]).toBe("3")
    expect(Array.from(saved.tensors["m.layer.w"]!.data as Float32Array)).not.toEqual(Array.from(a.state().tensors["m.layer.w"]!.data as Float32Array))
    // { views: true }: the same values, as the live arrays, which the next step changes.
    const views = a.state({ views: true })
    expect(views).toEqual(a.state())
    const m = Float32Array.from(views.tensors["m.layer.w"]!.data as Float32Array)
    a.step(pa, gradsAt(), hp)
    expect(Array.from(views.tensors["m.layer.w"]!.data as Float32Array)).toEqual(Array.from(a.state().tensors["m.layer.w"]!.data as Float32Array))
    expect(Array.from(views.tensors["m.layer.w"]!.data as Float32Array)).not.toEqual(Array.from(m))
  })

  it("minimizes sum((p - 3)²) under a cosine schedule", () => {
    const n = 4
    const opt = new AdamW(new Map([["p", n]]))
    const p = f32(-5, 0, 3, 10)
    const g = new Float32Array(n)
    const schedule: LrSchedule = { kind: "cosine", warmupSteps: 20, totalSteps: 1000, minRatio: 0.001 }
    for (let step = 0; step < 1000; step++) {
      for (let i = 0; i < n; i++) g[i] = 2 * (p[i]! - 3)
      opt.step(new Map([["p", p]]), new Map([["p", g]]), { ...defaultAdamParams, learningRate: lrAt(schedule, 0.1, step), beta2: 0.999, eps: 1e-8 })
    }
    for (const x of p) expect(Math.abs(x - 3)).toBeLessThan(1e-3)
  })

  it("rejects mismatched names, sizes and states with clear errors", () => {
    const sizes = new Map([["a", 2]])
    const opt = new AdamW(sizes)
    const ok = new Map([["a", f32(1, 2)]])
    expect(() => opt.step(new Map([["b", f32(1, 2)]]), ok, torchLike)).toThrow(/params do not match .*missing "a"; unexpected "b"/)
    expect(() => opt.step(ok, new Map([["a", f32(1)]]), torchLike)).toThrow(/grads "a" has 1 elements, expected 2/)
    expect(() => opt.step(ok, new Map([["a", f32(NaN, 0)]]), torchLike)).toThrow(/non-finite gradient norm.*"a"/)
    expect(() => opt.step(ok, ok, { ...torchLike, beta2: 1 })).toThrow(/beta2 must be in \[0, 1\)/)
    // Nothing changed by the refused steps.
    expect(opt.stepCount).toBe(0)
    expect(Array.from(ok.get("a")!)).toEqual([1, 2])
    expect(() => new AdamW(new Map([["a", -1]]))).toThrow(/non-negative integer/)

    const st = opt.state()
    expect(() => AdamW.fromState(new Map([["a", 3]]), st)).toThrow(/"m.a" has 2 elements, expected 3/)
    expect(() => AdamW.fromState(new Map([["a", 2], ["c", 1]]), st)).toThrow(/missing tensor "m.c"/)
    expect(() => AdamW.fromState(new Map(), st)).toThrow(/unexpected tensors "m.a", "v.a"/)
    expect(() => AdamW.fromState(sizes, { ...st, metadata: {} })).toThrow(/no "adamw_step"/)
    expect(() => AdamW.fromState(sizes, { ...st, metadata: { adamw_step: "1.5" } })).toThrow(/non-negative integer/)
    const wrongDtype = { ...st, tensors: { ...st.tensors, "v.a": { dtype: "F64" as const, shape: [2], data: new Float64Array(2) } } }
    expect(() => AdamW.fromState(sizes, wrongDtype)).toThrow(/"v.a" must be F32, got F64/)
  })
})

describe("lrAt", () => {
  const cosine: LrSchedule = { kind: "cosine", warmupSteps: 10, totalSteps: 100, minRatio: 0.1 }

  it("is constant for a constant schedule", () => {
    expect(lrAt({ kind: "constant" }, 0.3, 0)).toBe(0.3)
    expect(lrAt({ kind: "constant" }, 0.3, 12345)).toBe(0.3)
  })

  it("warms up linearly then follows a cosine to minRatio", () => {
    // Warmup: (step+1)/10.
    expect(lrAt(cosine, 1, 0)).toBeCloseTo(0.1, 12)
    expect(lrAt(cosine, 1, 4)).toBeCloseTo(0.5, 12)
    expect(lrAt(cosine, 1, 9)).toBe(1)
    // Decay from step 9 to step 99 (span 90): step 24 is progress 15/90 = 1/6,
    // factor ½(1 + cos(π/6)) = ½(1 + 0.8660254038) = 0.9330127019, lr = 0.1 + 0.9·0.9330127019 = 0.9397114317.
    expect(lrAt(cosine, 1, 24)).toBeCloseTo(0.9397114317, 9)
    // Step 54: progress ½, factor ½, lr = 0.1 + 0.9·0.5 = 0.55.
    expect(lrAt(cosine, 1, 54)).toBeCloseTo(0.55, 12)
    expect(lrAt(cosine, 2e-4, 99)).toBeCloseTo(2e-5, 15)
    expect(lrAt(cosine, 2e-4, 5000)).toBeCloseTo(2e-5, 15)
  })

  it("decays linearly, with warmupSteps 0 and 1 alike", () => {
    const lin = (warmupSteps: number): LrSchedule => ({ kind: "linear", warmupSteps, totalSteps: 5, minRatio: 0 })
    // From 1 at step 0 to 0 at step 4: 1, 0.75, 0.5, 0.25, 0.
    expect([0, 1, 2, 3, 4, 5].map((s) => lrAt(lin(0), 1, s))).toEqual([1, 0.75, 0.5, 0.25, 0, 0])
    expect([0, 1, 2, 3, 4, 5].map((s) => lrAt(lin(1), 1, s))).toEqual([1, 0.75, 0.5, 0.25, 0, 0])
    // Warmup 2 over 5 steps: 0.5, 1, then from step 1 to step 4 (span 3) down to 0.
    expect(lrAt(lin(2), 1, 0)).toBe(0.5)
    expect(lrAt(lin(2), 1, 1)).toBe(1)
    expect(lrAt(lin(2), 1, 2)).toBeCloseTo(2 / 3, 12)
    expect(lrAt({ kind: "linear", warmupSteps: 0, totalSteps: 3, minRatio: 0.5 }, 1, 1)).toBeCloseTo(0.75, 12)
  })

  it("rejects invalid schedules and steps", () => {
    expect(() => lrAt(cosine, 1, -1)).toThrow(/step must be a non-negative integer/)
    expect(() => lrAt(cosine, 1, 1.5)).toThrow(/step must be a non-negative integer/)
    expect(() => lrAt({ ...cosine, totalSteps: 5 }, 1, 0)).toThrow(/totalSteps/)
    expect(() => lrAt({ ...cosine, minRatio: 2 }, 1, 0)).toThrow(/minRatio/)
  })
})
