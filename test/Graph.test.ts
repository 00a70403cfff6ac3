/** Forward results of every IR op, run through onnxruntime-node, vs a plain-JS reference. */
import { describe, expect, it } from "vitest"
import { Graph, GraphError, type DType, type Value } from "../src/model/graph/Graph.ts"
import * as Onnx from "../src/model/graph/Onnx.ts"

interface In { readonly shape: ReadonlyArray<number>; readonly data: ReadonlyArray<number>; readonly dtype?: DType }

const typed = (dtype: DType, data: ReadonlyArray<number>): Onnx.TensorData["data"] =>
  dtype === "float64" ? Float64Array.from(data)
    : dtype === "float32" ? Float32Array.from(data)
    : dtype === "int64" ? BigInt64Array.from(data.map((d) => BigInt(d)))
    : Uint8Array.from(data)

/** Builds a one-output graph over the given inputs, runs it, returns [data, dims]. */
const run = async (ins: ReadonlyArray<In>, build: (g: Graph, xs: ReadonlyArray<Value>) => Value) => {
  const g = new Graph()
  const feeds: Record<string, Onnx.TensorData> = {}
  const xs = ins.map((s, i) => {
    const dtype = s.dtype ?? "float64"
    feeds[`x${i}`] = { data: typed(dtype, s.data), dims: s.shape }
    return g.input(`x${i}`, dtype, s.shape)
  })
  const y = build(g, xs)
  g.output("y", y)
  const out = (await (await Onnx.load(g))(feeds))["y"]!
  expect(out.dims).toEqual(y.shape) // static shape inference agrees with ORT
  return Array.from(out.data as ArrayLike<number | bigint>, Number)
}

const A: In = { shape: [2, 3], data: [1, -2, 3, 0.5, 4, -1] }
const B: In = { shape: [3], data: [0.5, 2, -3] }
const POS: In = { shape: [2, 3], data: [1, 2, 3, 0.5, 4, 9] }
const close = (got: ReadonlyArray<number>, want: ReadonlyArray<number>) => {
  expect(got.length).toBe(want.length)
  got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 12))
}
const bcast = (f: (a: number, b: number) => number) => A.data.map((a, i) => f(a, B.data[i % 3]!))
const unary = (f: (x: number) => number, x: In = A) => x.data.map(f)

describe("Graph ops forward (float64) vs plain JS", () => {
  const cases: ReadonlyArray<[string, ReadonlyArray<In>, (g: Graph, xs: ReadonlyArray<Value>) => Value, ReadonlyArray<number>]> = [
    ["Add", [A, B], (g, [a, b]) => g.add(a!, b!), bcast((a, b) => a + b)],
    ["Sub", [A, B], (g, [a, b]) => g.sub(a!, b!), bcast((a, b) => a - b)],
    ["Mul", [A, B], (g, [a, b]) => g.mul(a!, b!), bcast((a, b) => a * b)],
    ["Div", [A, B], (g, [a, b]) => g.div(a!, b!), bcast((a, b) => a / b)],
    ["Neg", [A], (g, [a]) => g.neg(a!), unary((x) => -x)],
    ["Exp", [A], (g, [a]) => g.exp(a!), unary(Math.exp)],
    ["Log", [POS], (g, [a]) => g.log(a!), unary(Math.log, POS)],
    ["Sqrt", [POS], (g, [a]) => g.sqrt(a!), unary(Math.sqrt, POS)],
    ["Pow", [POS], (g, [a]) => g.pow(a!, 1.5), unary((x) => x ** 1.5, POS)],
    ["Sin", [A], (g, [a]) => g.sin(a!), unary(Math.sin)],
    ["Cos", [A], (g, [a]) => g.cos(a!), unary(Math.cos)],
    ["Tanh", [A], (g, [a]) => g.tanh(a!), unary(Math.tanh)],
    ["Sigmoid", [A], (g, [a]) => g.sigmoid(a!), unary((x) => 1 / (1 + Math.exp(-x)))],
    ["Relu", [A], (g, [a]) => g.relu(a!), unary((x) => Math.max(0, x))],
    ["MatMul", [A, { shape: [3, 2], data: [1, 2, 3, 4, 5, 6] }], (g, [a, b]) => g.matmul(a!, b!),
      [1 - 6 + 15, 2 - 8 + 18, 0.5 + 12 - 5, 1 + 16 - 6]],
    ["ReduceSum", [A], (g, [a]) => g.reduceSum(a!, [1]), [2, 3.5]],
    ["ReduceMean keepdims", [A], (g, [a]) => g.reduceMean(a!, [0], true), [0.75, 1, 1]],
    ["Softmax", [A], (g, [a]) => g.softmax(a!), [0, 1].flatMap((r) => {
      const row = A.data.slice(3 * r, 3 * r + 3)
      const z = row.reduce((s, v) => s + Math.exp(v), 0)
      return row.map((v) => Math.exp(v) / z)
    })],
    ["LogSoftmax", [A], (g, [a]) => g.logSoftmax(a!), [0, 1].flatMap((r) => {
      const row = A.data.slice(3 * r, 3 * r + 3)
      const lz = Math.log(row.reduce((s, v) => s + Math.exp(v), 0))
      return row.map((v) => v - lz)
    })],
    ["Reshape", [A], (g, [a]) => g.reshape(a!, [3, -1]), A.data],
    ["Transpose", [A], (g, [a]) => g.transpose(a!, [1, 0]), [1, 0.5, -2, 4, 3, -1]],
    ["Gather", [{ shape: [3, 2], data: [1, 2, 3, 4, 5, 6] }, { shape: [2, 2], data: [2, 0, 0, 1], dtype: "int64" }],
      (g, [e, i]) => g.gather(e!, i!), [5, 6, 1, 2, 1, 2, 3, 4]],
    ["Unsqueeze", [A], (g, [a]) => g.unsqueeze(a!, [0, -1]), A.data],
    ["Concat", [A, { shape: [2, 1], data: [7, 8] }], (g, [a, b]) => g.concat([a!, b!], 1), [1, -2, 3, 7, 0.5, 4, -1, 8]],
    ["Slice", [A], (g, [a]) => g.slice(a!, [1], [100], [1]), [-2, 3, 4, -1]],
    ["Pad", [B], (g, [b]) => g.pad(b!, [1, 2]), [0, 0.5, 2, -3, 0, 0]],
    ["Where", [A, B], (g, [a, b]) => g.where(g.greater(a!, b!), a!, b!), bcast((a, b) => (a > b ? a : b))],
    ["Less/Cast", [A, B], (g, [a, b]) => g.cast(g.less(a!, b!), "float64"), bcast((a, b) => (a < b ? 1 : 0))],
    ["Equal (int64)", [{ shape: [3], data: [1, 2, 3], dtype: "int64" }], (g, [a]) => g.cast(g.equal(a!, g.constant(2, "int64")), "int64"), [0, 1, 0]],
    ["Constant", [A], (g, [a]) => g.add(a!, g.constant([1, 2, 3], "float64", [3])), bcast((a, _b) => a).map((v, i) => v + [1, 2, 3][i % 3]!)],
    ["Shape", [A], (g, [a]) => g.shapeOf(a!), [2, 3]],
    ["Size", [A], (g, [a]) => g.sizeOf(a!), [6]],
    ["Expand", [B], (g, [b]) => g.expand(b!, g.constant([2, 3], "int64"), [2, 3]), [...B.data, ...B.data]],
    ["ScatterNDAdd", [{ shape: [3, 2], data: [1, 1, 1, 1, 1, 1] }, { shape: [3, 1], data: [2, 0, 2], dtype: "int64" }, { shape: [3, 2], data: [1, 2, 3, 4, 5, 6] }],
      (g, [d, i, u]) => g.scatterNDAdd(d!, i!, u!), [4, 5, 1, 1, 7, 9]]
  ]
  for (const [name, ins, build, want] of cases) {
    it(name, async () => close(await run(ins, build), want))
  }

  it("float32 runs too (MatMul + Softmax)", async () => {
    const f32 = (x: In): In => ({ ...x, dtype: "float32" })
    const got = await run([f32(A), f32({ shape: [3, 2], data: [1, 0, 0, 1, 1, 1] })], (g, [a, b]) => g.softmax(g.matmul(a!, b!)))
    const logits = [[1 + 3, -2 + 3], [0.5 - 1, 4 - 1]]
    const want = logits.flatMap(([p, q]) => [Math.exp(p!) / (Math.exp(p!) + Math.exp(q!)), Math.exp(q!) / (Math.exp(p!) + Math.exp(q!))])
    got.forEach((v, i) => expect(v).toBeCloseTo(want[i]!, 6))
  })

  it("symbolic dims: one model serves any batch size", async () => {
    const g = new Graph()
    const x = g.input("x", "float64", ["B", 3])
    g.output("y", g.reduceSum(x, [1]))
    const session = await Onnx.load(g)
    for (const b of [1, 4]) {
      const out = await session({ x: { data: new Float64Array(3 * b).fill(2), dims: [b, 3] } })
      expect(Array.from(out["y"]!.data as Float64Array)).toEqual(new Array(b).fill(6))
    }
  })

  it("shape errors are reported at build time with the op", () => {
    const g = new Graph()
    expect(() => g.add(g.input("a", "float64", [2, 3]), g.input("b", "float64", [4]))).toThrow(/ShapeMismatch at Add/)
    expect(() => g.input("a", "float64", [1])).toThrow(GraphError)
  })

  it("weights are inputs: one session, new weights, no rebuild", async () => {
    const g = new Graph()
    const x = g.input("x", "float32", ["B", 2])
    const w = g.input("w", "float32", [2, 2])
    g.output("y", g.matmul(x, w))
    expect([Onnx.IR_VERSION, Onnx.OPSET]).toEqual([8, 18])
    const session = await Onnx.load(g)
    const feedX = { data: Float32Array.from([1, 2]), dims: [1, 2] }
    const y1 = await session({ x: feedX, w: { data: Float32Array.from([1, 0, 0, 1]), dims: [2, 2] } })
    const y2 = await session({ x: feedX, w: { data: Float32Array.from([0, 1, 1, 0]), dims: [2, 2] } })
    expect(Array.from(y1["y"]!.data as Float32Array)).toEqual([1, 2])
    expect(Array.from(y2["y"]!.data as Float32Array)).toEqual([2, 1])
  })
})
