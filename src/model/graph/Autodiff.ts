/**
 * Reverse-mode autodiff over Graph.ts: backward ops are appended to the same graph.
 *
 * One rule per op type (tinygrad's gradient table): a rule gets the output gradient `g` (shaped
 * like the node's output) and returns one gradient per input, or null where an input takes none.
 * Summing of gradients and un-broadcasting (ReduceSum over broadcast axes) happen once, here, in
 * `gradients`; a node on the path without a rule fails at build time, naming the node.
 *
 * @example
 * const logp = ...                                   // [B, T] per-token logprobs
 * const dlogp = g.input("dlogp", "float32", ["B", "T"])  // dLoss/dlogprob, fed at run time
 * const [dW] = gradients(g, { output: logp, seed: dlogp, wrt: [W] })
 * g.output("dW", dW!)
 */
import { GraphError, isFloat, type Graph, type Node, type OpType, type Shape, type Value } from "./Graph.ts"

/** A gradient rule: output gradient in, one gradient (or null) per input out. */
export type Rule = (g: Graph, node: Node, y: Value, dy: Value) => ReadonlyArray<Value | null>

const inv = (perm: ReadonlyArray<number>): Array<number> => {
  const out = new Array<number>(perm.length)
  perm.forEach((p, i) => (out[p] = i))
  return out
}

/** Expands a reduced gradient back to x's shape (re-inserting the reduced axes first). */
const unreduce = (g: Graph, node: Node, dy: Value): Value => {
  const x = node.inputs[0]!
  const kept = node.attrs.keepdims === true ? dy : g.unsqueeze(dy, node.attrs.axes ?? [])
  return g.expand(kept, g.shapeOf(x), x.shape)
}

/** The gradient table. `y` is the node's output value, `dy` the gradient flowing into it. */
export const rules: Partial<Record<OpType, Rule>> = {
  Identity: (_g, _n, _y, dy) => [dy],
  Add: (_g, _n, _y, dy) => [dy, dy],
  Sub: (g, _n, _y, dy) => [dy, g.neg(dy)],
  Mul: (g, n, _y, dy) => [g.mul(dy, n.inputs[1]!), g.mul(dy, n.inputs[0]!)],
  // d(a/b) = da/b - a db/b^2 = da/b - y db/b
  Div: (g, n, y, dy) => [g.div(dy, n.inputs[1]!), g.neg(g.div(g.mul(dy, y), n.inputs[1]!))],
  Neg: (g, _n, _y, dy) => [g.neg(dy)],
  Exp: (g, _n, y, dy) => [g.mul(dy, y)],
  Log: (g, n, _y, dy) => [g.div(dy, n.inputs[0]!)],
  Sqrt: (g, _n, y, dy) => [g.div(g.mul(dy, g.scalar(y, 0.5)), y)],
  Pow: (g, n, _y, dy) => {
    const p = n.attrs.exponent ?? 1
    const x = n.inputs[0]!
    return [g.mul(dy, g.mul(g.scalar(x, p), g.pow(x, p - 1)))]
  },
  Sin: (g, n, _y, dy) => [g.mul(dy, g.cos(n.inputs[0]!))],
  Cos: (g, n, _y, dy) => [g.neg(g.mul(dy, g.sin(n.inputs[0]!)))],
  Tanh: (g, _n, y, dy) => [g.mul(dy, g.sub(g.scalar(y, 1), g.mul(y, y)))],
  Sigmoid: (g, _n, y, dy) => [g.mul(dy, g.mul(y, g.sub(g.scalar(y, 1), y)))],
  Relu: (g, n, _y, dy) => {
    const x = n.inputs[0]!
    return [g.where(g.greater(x, g.scalar(x, 0)), dy, g.scalar(dy, 0))]
  },
  // [.., M, K] @ [.., K, N]: dA = dY Bᵀ, dB = Aᵀ dY (batch dims un-broadcast centrally). A weight
  // B [K, N] shared by a batch A [.., M, K] gets one matmul over every row, [K, ·M] · [·M, N],
  // instead of a [.., K, N] product per batch entry summed afterwards.
  MatMul: (g, n, _y, dy) => {
    const [a, b] = [n.inputs[0]!, n.inputs[1]!]
    const [K, N] = b.shape
    const shared = b.shape.length === 2 && a.shape.length > 2 && typeof K === "number" && typeof N === "number"
    return [
      g.matmul(dy, g.transposeLast2(b)),
      shared ? g.matmul(g.transposeLast2(g.reshape(a, [-1, K])), g.reshape(dy, [-1, N])) : g.matmul(g.transposeLast2(a), dy)
    ]
  },
  ReduceSum: (g, n, _y, dy) => [unreduce(g, n, dy)],
  ReduceMean: (g, n, y, dy) => {
    const x = n.inputs[0]!
    const count = g.div(g.cast(g.sizeOf(x), x.dtype), g.cast(g.sizeOf(y), x.dtype))
    return [g.div(unreduce(g, n, dy), count)]
  },
  // dx = y ⊙ (dy − Σ_last dy ⊙ y)
  Softmax: (g, _n, y, dy) => [g.mul(y, g.sub(dy, g.reduceSum(g.mul(dy, y), [-1], true)))],
  // dx = dy − softmax(x) Σ_last dy
  LogSoftmax: (g, _n, y, dy) => [g.sub(dy, g.mul(g.exp(y), g.reduceSum(dy, [-1], true)))],
  Reshape: (g, n, _y, dy) => {
    const x = n.inputs[0]!
    return [g.reshape(dy, { shape: g.shapeOf(x), as: x.shape }), null]
  },
  Unsqueeze: (g, n, _y, dy) => {
    const x = n.inputs[0]!
    return [g.reshape(dy, { shape: g.shapeOf(x), as: x.shape })]
  },
  Transpose: (g, n, _y, dy) => [g.transpose(dy, inv(n.attrs.perm ?? []))],
  // A row gathered several times (a token embedding) must sum its gradients in a fixed order:
  // onnxruntime's ScatterND "add" runs in parallel and its float sums vary from run to run, while
  // its ScatterElements "add" walks the updates in order. A table [V, width] gets dy's rows added
  // by ScatterElements; the one-hot matmul it replaces cost 2·N·V·width FLOP, a tenth of a
  // training run's matmuls at story-1m's V = 4,096. Other gathers (unique indices into a flat
  // tensor) scatter-add dy into zeros with ScatterND.
  Gather: (g, n, _y, dy) => {
    const [data, idx] = [n.inputs[0]!, n.inputs[1]!]
    const width = data.shape[1]
    if (data.shape.length === 2 && typeof width === "number") {
      const rows = g.reshape(dy, [-1, width]) // [N, width]
      const index = g.expand(g.reshape(idx, [-1, 1]), g.shapeOf(rows), rows.shape) // [N, width]: row i's table row, in every column
      return [g.scatterElementsAdd(g.zerosLike(data), index, rows), null]
    }
    return [g.scatterNDAdd(g.zerosLike(data), g.unsqueeze(idx, [-1]), dy), null]
  },
  Concat: (g, n, _y, dy) => {
    const axis = n.attrs.axis ?? 0
    let offset = 0
    return n.inputs.map((x) => {
      const size = x.shape[axis]
      if (typeof size !== "number") {
        throw new GraphError("Unsupported", n.name, `Concat gradient needs a static size on axis ${axis}`)
      }
      const part = g.slice(dy, [offset], [offset + size], [axis])
      offset += size
      return part
    })
  },
  Slice: (g, n, _y, dy) => {
    const x = n.inputs[0]!
    const r = x.shape.length
    const pads = new Array<number>(2 * r).fill(0)
    const { starts = [], ends = [], axes = [] } = n.attrs
    axes.forEach((a, k) => {
      const d = x.shape[a]
      if (typeof d !== "number") throw new GraphError("Unsupported", n.name, `Slice gradient needs a static size on axis ${a}`)
      pads[a] = starts[k]!
      pads[a + r] = d - ends[k]!
    })
    return [g.pad(dy, pads)]
  },
  Pad: (g, n, _y, dy) => {
    const x = n.inputs[0]!
    const r = x.shape.length
    const pads = n.attrs.pads ?? []
    const axes = x.shape.map((_, i) => i).filter((i) => pads[i] !== 0 || pads[i + r] !== 0)
    const starts = axes.map((a) => pads[a]!)
    const ends = axes.map((a) => {
      const d = x.shape[a]
      if (typeof d !== "number") throw new GraphError("Unsupported", n.name, `Pad gradient needs a static size on axis ${a}`)
      return pads[a]! + d
    })
    return [axes.length === 0 ? dy : g.slice(dy, starts, ends, axes)]
  },
  Where: (g, n, _y, dy) => {
    const cond = n.inputs[0]!
    const zero = g.scalar(dy, 0)
    return [null, g.where(cond, dy, zero), g.where(cond, zero, dy)]
  },
  Cast: (g, n, _y, dy) => {
    const x = n.inputs[0]!
    return [isFloat(x.dtype) ? g.cast(dy, x.dtype) : null]
  },
  Expand: (_g, _n, _y, dy) => [dy, null]
}

/**
 * Reduces a gradient shaped like a broadcast result back to the shape of `x`: sums leading axes
 * away and sums (keeping dims) where x has size 1 but the gradient does not.
 */
export const unbroadcast = (g: Graph, grad: Value, x: Shape): Value => {
  const lead = grad.shape.length - x.length
  const ones: Array<number> = []
  x.forEach((d, i) => {
    if (d === 1 && grad.shape[i + lead] !== 1) ones.push(i + lead)
  })
  let out = ones.length > 0 ? g.reduceSum(grad, ones, true) : grad
  if (lead > 0) out = g.reduceSum(out, Array.from({ length: lead }, (_, i) => i), false)
  return out
}

export interface GradientsOptions {
  /** The value to differentiate. */
  readonly output: Value
  /** dLoss/d(output), same shape as output (e.g. a graph input). Omitted: output must be a scalar, seed 1. */
  readonly seed?: Value
  /** The values (usually weight inputs) to take gradients for. */
  readonly wrt: ReadonlyArray<Value>
}

/**
 * Appends the backward pass to `graph` and returns d(output · seed)/d(wrt[i]) for each i, shaped
 * like wrt[i]. An input the output does not depend on gets zeros.
 */
export const gradients = (graph: Graph, options: GradientsOptions): ReadonlyArray<Value> => {
  const { output, wrt } = options
  // Which values lie on a path from some wrt value to the output (only these need gradients).
  const wrtIds = new Set(wrt.map((v) => v.id))
  const reaches = new Map<number, boolean>()
  const depends = (v: Value): boolean => {
    const known = reaches.get(v.id)
    if (known !== undefined) return known
    const fromInputs = v.node.inputs.map(depends).some((b) => b) // map first: visit every input
    const r = wrtIds.has(v.id) || (isFloat(v.dtype) && fromInputs)
    reaches.set(v.id, r)
    return r
  }
  depends(output)

  let seed = options.seed
  if (seed === undefined) {
    if (!output.shape.every((d) => d === 1)) {
      throw new GraphError("BadArgument", output.node.name, "a non-scalar output needs a seed gradient")
    }
    seed = graph.constant(1, output.dtype, output.shape)
  }
  const contributions = new Map<number, Array<Value>>([[output.id, [seed]]])
  const total = (v: Value): Value | undefined => {
    const parts = contributions.get(v.id)
    if (parts === undefined || parts.length === 0) return undefined
    return parts.reduce((acc, p) => graph.add(acc, p))
  }

  // Reverse topological order = reverse creation order (values only consume earlier values).
  const order = graph.values.slice(0, output.id + 1).reverse()
  const done = new Map<number, Value>()
  for (const y of order) {
    if (!reaches.get(y.id)) continue
    const dy = total(y)
    if (dy === undefined) continue
    done.set(y.id, dy)
    const node = y.node
    if (node.op === "Input" || (wrtIds.has(y.id) && node.inputs.every((x) => !reaches.get(x.id)))) continue
    const rule = rules[node.op]
    if (rule === undefined) {
      throw new GraphError("MissingGradientRule", node.name, `no gradient rule for op ${node.op}`)
    }
    const grads = rule(graph, node, y, dy)
    node.inputs.forEach((x, i) => {
      const gx = grads[i]
      if (gx === null || gx === undefined || !reaches.get(x.id)) return
      const list = contributions.get(x.id) ?? []
      list.push(unbroadcast(graph, gx, x.shape))
      contributions.set(x.id, list)
    })
  }
  return wrt.map((w) => done.get(w.id) ?? graph.zerosLike(w))
}
