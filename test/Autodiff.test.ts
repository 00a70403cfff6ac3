/**
 * Every gradient rule checked against central finite differences, run through onnxruntime-node in
 * float64 (ORT's CPU kernels for all ops used here accept double), so h = 1e-5 gives truncation
 * error ~h² and rounding ~1e-16/h; a tolerance of 1e-6 (relative to max(1, |fd|)) is ample.
 */
import { describe, expect, it } from "vitest"
import { gradients } from "../src/model/graph/Autodiff.ts"
import { Graph, GraphError, type DType, type Value } from "../src/model/graph/Graph.ts"
import * as Onnx from "../src/model/graph/Onnx.ts"

/** Deterministic uniform [lo, hi) numbers (LCG), so failures reproduce. */
const rng = (seed: number) => (n: number, lo = -1, hi = 1): Array<number> =>
  Array.from({ length: n }, () => {
    seed = (seed * 1664525 + 1013904223) % 4294967296
    return lo + ((hi - lo) * seed) / 4294967296
  })

interface Spec {
  readonly name: string
  readonly shape: ReadonlyArray<number>
  readonly dtype?: DType
  /** Data; default uniform(-1, 1). */
  readonly data?: ReadonlyArray<number>
  readonly lo?: number
  readonly hi?: number
  /** Not differentiated (indices, masks). */
  readonly fixed?: boolean
}

const size = (shape: ReadonlyArray<number>): number => shape.reduce((p, q) => p * q, 1)

const typed = (dtype: DType, data: ReadonlyArray<number>): Onnx.TensorData["data"] =>
  dtype === "float64" ? Float64Array.from(data)
    : dtype === "float32" ? Float32Array.from(data)
    : dtype === "int64" ? BigInt64Array.from(data.map((d) => BigInt(d)))
    : Uint8Array.from(data)

const numbers = (t: Onnx.TensorData | undefined): Array<number> => Array.from(t!.data as ArrayLike<number | bigint>, Number)

/**
 * L = Σ y ⊙ R (R random), analytic dL/dx from the generated backward graph vs central differences.
 * Returns the worst error relative to max(1, |fd|) over all differentiated inputs.
 */
const fdCheck = async (specs: ReadonlyArray<Spec>, build: (g: Graph, xs: ReadonlyArray<Value>) => Value, seed = 1) => {
  const rand = rng(seed)
  const g = new Graph()
  const feeds: Record<string, Onnx.TensorData> = {}
  const xs = specs.map((s) => {
    const dtype = s.dtype ?? "float64"
    const data = s.data ?? rand(size(s.shape), s.lo, s.hi)
    feeds[s.name] = { data: typed(dtype, data), dims: s.shape }
    return g.input(s.name, dtype, s.shape)
  })
  const y = build(g, xs)
  const yShape = y.shape as ReadonlyArray<number>
  const r = g.input("r", "float64", yShape)
  feeds["r"] = { data: Float64Array.from(rand(size(yShape))), dims: yShape }
  const loss = g.reduceSum(g.mul(y, r), yShape.map((_, i) => i))
  g.output("loss", loss)
  const wrt = xs.filter((_, i) => specs[i]!.fixed !== true)
  gradients(g, { output: loss, wrt }).forEach((d, i) => g.output(`d_${wrt[i]!.name}`, d))
  const run = await Onnx.load(g)
  const base = await run(feeds)
  const h = 1e-5
  let worst = 0
  for (const w of wrt) {
    const analytic = numbers(base[`d_${w.name}`])
    const x = feeds[w.name]!.data as Float64Array
    for (let i = 0; i < x.length; i++) {
      const x0 = x[i]!
      x[i] = x0 + h
      const plus = numbers((await run(feeds))["loss"])[0]!
      x[i] = x0 - h
      const minus = numbers((await run(feeds))["loss"])[0]!
      x[i] = x0
      const fd = (plus - minus) / (2 * h)
      worst = Math.max(worst, Math.abs(fd - analytic[i]!) / Math.max(1, Math.abs(fd)))
    }
  }
  return worst
}

const TOL = 1e-6
const errors: Record<string, number> = {}
const check = (rule: string, specs: ReadonlyArray<Spec>, build: (g: Graph, xs: ReadonlyArray<Value>) => Value) =>
  it(`${rule} rule matches finite differences`, async () => {
    const err = await fdCheck(specs, build)
    errors[rule] = err
    expect(err).toBeLessThan(TOL)
  })

const A = (name: string, ...shape: Array<number>): Spec => ({ name, shape })
const P = (name: string, ...shape: Array<number>): Spec => ({ name, shape, lo: 0.5, hi: 2 })

describe("gradient rules (float64, central differences)", () => {
  check("Identity", [A("x", 2, 3)], (g, [x]) => g.identity(x!))
  check("Add (broadcast)", [A("a", 2, 3), A("b", 3)], (g, [a, b]) => g.add(a!, b!))
  check("Sub (broadcast)", [A("a", 2, 3), A("b", 2, 1)], (g, [a, b]) => g.sub(a!, b!))
  check("Mul (broadcast)", [A("a", 2, 3), A("b", 1, 3)], (g, [a, b]) => g.mul(a!, b!))
  check("Div", [A("a", 2, 3), P("b", 2, 3)], (g, [a, b]) => g.div(a!, b!))
  check("Neg", [A("x", 2, 3)], (g, [x]) => g.neg(x!))
  check("Exp", [A("x", 2, 3)], (g, [x]) => g.exp(x!))
  check("Log", [P("x", 2, 3)], (g, [x]) => g.log(x!))
  check("Sqrt", [P("x", 2, 3)], (g, [x]) => g.sqrt(x!))
  check("Pow", [P("x", 2, 3)], (g, [x]) => g.pow(x!, 2.5))
  check("Sin", [A("x", 2, 3)], (g, [x]) => g.sin(x!))
  check("Cos", [A("x", 2, 3)], (g, [x]) => g.cos(x!))
  check("Tanh", [A("x", 2, 3)], (g, [x]) => g.tanh(x!))
  check("Sigmoid", [A("x", 2, 3)], (g, [x]) => g.sigmoid(x!))
  check("Relu", [{ name: "x", shape: [2, 3], data: [-1, 0.5, -0.3, 2, 0.1, -0.7] }], (g, [x]) => g.relu(x!))
  check("MatMul (batch broadcast)", [A("a", 2, 3, 4), A("b", 4, 5)], (g, [a, b]) => g.matmul(a!, b!))
  check("ReduceSum", [A("x", 2, 3, 4)], (g, [x]) => g.reduceSum(x!, [1]))
  check("ReduceMean (keepdims)", [A("x", 2, 3, 4)], (g, [x]) => g.reduceMean(x!, [0, 2], true))
  check("Softmax", [A("x", 2, 5)], (g, [x]) => g.softmax(x!))
  check("LogSoftmax", [A("x", 2, 5)], (g, [x]) => g.logSoftmax(x!))
  check("Reshape", [A("x", 2, 3, 4)], (g, [x]) => g.reshape(x!, [0, -1]))
  check("Transpose", [A("x", 2, 3, 4)], (g, [x]) => g.transpose(x!, [2, 0, 1]))
  check("Gather (repeated rows)", [A("E", 5, 3), { name: "ids", shape: [2, 3], dtype: "int64", data: [0, 4, 4, 2, 0, 4], fixed: true }],
    (g, [e, ids]) => g.gather(e!, ids!))
  check("Unsqueeze", [A("x", 2, 3)], (g, [x]) => g.unsqueeze(x!, [0, 2]))
  check("Concat", [A("a", 2, 3), A("b", 2, 2)], (g, [a, b]) => g.concat([a!, b!], 1))
  check("Slice", [A("x", 4, 5)], (g, [x]) => g.slice(x!, [1, 1], [3, -1], [0, 1]))
  check("Pad", [A("x", 2, 3)], (g, [x]) => g.pad(x!, [1, 0, 0, 2]))
  check("Where (broadcast)", [{ name: "c", shape: [2, 3], dtype: "bool", data: [1, 0, 1, 0, 0, 1], fixed: true }, A("a", 2, 3), A("b", 3)],
    (g, [c, a, b]) => g.where(c!, a!, b!))
  check("Cast (float64 -> float64)", [A("x", 2, 3)], (g, [x]) => g.cast(x!, "float64"))
  check("Expand", [A("x", 3)], (g, [x]) => g.expand(x!, g.constant([2, 3], "int64"), [2, 3]))

  it("composite: 2-layer MLP with softmax cross-entropy, all weights", async () => {
    const labels = [0, 2, 1, 3]
    const err = await fdCheck(
      [{ ...A("x", 4, 3), fixed: true }, A("W1", 3, 5), A("b1", 5), A("W2", 5, 4), A("b2", 4),
        { name: "Y", shape: [4, 4], data: labels.flatMap((l) => [0, 1, 2, 3].map((k) => (k === l ? 1 : 0))), fixed: true }],
      (g, [x, W1, b1, W2, b2, Y]) => {
        const h = g.tanh(g.add(g.matmul(x!, W1!), b1!)) // [4, 5]
        const logp = g.logSoftmax(g.add(g.matmul(h, W2!), b2!)) // [4, 4]
        return g.neg(g.reduceMean(g.reduceSum(g.mul(Y!, logp), [-1]), [0], true)) // [1]
      })
    errors["MLP + cross-entropy"] = err
    expect(err).toBeLessThan(TOL)
  })

  it("seed gradient as an input: per-token logprobs, symbolic [B, T]", async () => {
    const V = 6, C = 4
    const rand = rng(7)
    const g = new Graph()
    const E = g.input("E", "float64", [V, C])
    const W = g.input("W", "float64", [C, V])
    const ids = g.input("ids", "int64", ["B", "T"])
    const targets = g.input("targets", "int64", ["B", "T"])
    const logits = g.matmul(g.gather(E, ids), W) // [B, T, V]
    const vocab = g.constant([0, 1, 2, 3, 4, 5], "int64", [V])
    const onehot = g.cast(g.equal(g.unsqueeze(targets, [-1]), vocab), "float64") // [B, T, V]
    const tokenLogp = g.reduceSum(g.mul(g.logSoftmax(logits), onehot), [-1]) // [B, T]
    const dlogp = g.input("dlogp", "float64", ["B", "T"])
    g.output("logp", tokenLogp)
    const [dE, dW] = gradients(g, { output: tokenLogp, seed: dlogp, wrt: [E, W] })
    g.output("dE", dE!)
    g.output("dW", dW!)
    const run = await Onnx.load(g)
    const feeds: Record<string, Onnx.TensorData> = {
      E: { data: Float64Array.from(rand(V * C)), dims: [V, C] },
      W: { data: Float64Array.from(rand(C * V)), dims: [C, V] },
      ids: { data: BigInt64Array.from([1n, 3n, 3n, 5n, 0n, 2n]), dims: [2, 3] },
      targets: { data: BigInt64Array.from([3n, 3n, 5n, 0n, 2n, 1n]), dims: [2, 3] },
      dlogp: { data: Float64Array.from(rand(6)), dims: [2, 3] }
    }
    const seed = numbers(feeds["dlogp"])
    const objective = async () => numbers((await run(feeds))["logp"]).reduce((s, v, i) => s + v * seed[i]!, 0)
    const base = await run(feeds)
    let worst = 0
    for (const [name, grad] of [["E", "dE"], ["W", "dW"]] as const) {
      const x = feeds[name]!.data as Float64Array
      const analytic = numbers(base[grad])
      for (let i = 0; i < x.length; i++) {
        const x0 = x[i]!
        x[i] = x0 + 1e-5
        const plus = await objective()
        x[i] = x0 - 1e-5
        const minus = await objective()
        x[i] = x0
        worst = Math.max(worst, Math.abs((plus - minus) / 2e-5 - analytic[i]!))
      }
    }
    errors["per-token logprobs, seed input"] = worst
    expect(worst).toBeLessThan(TOL)
    // E rows never looked up (4) get exactly zero gradient.
    expect(numbers(base["dE"]).slice(4 * C, 5 * C)).toEqual([0, 0, 0, 0])
  })

  it("a missing rule fails at graph build, naming the node and op", () => {
    const g = new Graph()
    const x = g.input("x", "float64", [3])
    const y = g.sizeOf(x)
    const loss = g.reduceSum(g.mul(x, g.cast(y, "float64")), [0])
    // Size has an int64 output, so it is off the differentiable path: no rule needed.
    expect(() => gradients(g, { output: loss, wrt: [x] })).not.toThrow()
    const z = g.input("z", "float64", [3])
    const s = g.scatterNDAdd(z, g.constant([0], "int64", [1, 1]), g.constant([1], "float64", [1]))
    const l2 = g.reduceSum(s, [0])
    expect(() => gradients(g, { output: l2, wrt: [z] })).toThrow(GraphError)
    expect(() => gradients(g, { output: l2, wrt: [z] })).toThrow(/MissingGradientRule at ScatterNDAdd_\d+: no gradient rule for op ScatterNDAdd/)
  })

  it("prints the error table", () => {
    // eslint-disable-next-line no-console
    console.log(Object.entries(errors).map(([k, v]) => `${k}: ${v.toExponential(2)}`).join("\n"))
  })
})
