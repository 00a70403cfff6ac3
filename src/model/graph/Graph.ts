/**
 * A small tensor-op IR: the model is written once against this builder, and both the inference
 * graph and the training graph (forward + backward, see Autodiff.ts) are emitted from it as ONNX
 * (Onnx.ts). Values are symbolic tensors with a name, a dtype and a shape whose dims are numbers or
 * symbolic names (e.g. "T"). Every node has exactly one output. Weights are graph INPUTS, not
 * initializers, so an optimizer step needs no rebuild.
 *
 * @example
 * const g = new Graph()
 * const x = g.input("x", "float32", ["B", 4])
 * const w = g.input("w", "float32", [4, 3])
 * g.output("y", g.softmax(g.matmul(x, w)))
 */

/** Element types the IR knows; float64 exists so finite-difference checks are exact enough. */
export type DType = "float32" | "float64" | "int64" | "bool"
/** One dimension: a size, or a symbolic name bound at run time. */
export type Dim = number | string
export type Shape = ReadonlyArray<Dim>

/** Every op the IR can hold. Attributes live in `Node.attrs`, keyed as in ONNX where possible. */
export type OpType =
  | "Input" | "Constant"
  | "MatMul" | "Add" | "Sub" | "Mul" | "Div" | "Neg" | "Exp" | "Log" | "Sqrt" | "Pow"
  | "Sin" | "Cos" | "Tanh" | "Sigmoid" | "Relu"
  | "ReduceSum" | "ReduceMean" | "Softmax" | "LogSoftmax"
  | "Reshape" | "Transpose" | "Gather" | "Unsqueeze" | "Concat" | "Slice" | "Where" | "Cast"
  | "Shape" | "Size" | "Expand" | "ScatterNDAdd" | "ScatterElementsAdd" | "Pad"
  | "Greater" | "Less" | "Equal" | "Identity" | "Range"

export interface Attrs {
  readonly axes?: ReadonlyArray<number>
  readonly keepdims?: boolean
  readonly perm?: ReadonlyArray<number>
  readonly axis?: number
  readonly to?: DType
  readonly exponent?: number
  readonly starts?: ReadonlyArray<number>
  readonly ends?: ReadonlyArray<number>
  /** Pad: [begin_0..begin_{r-1}, end_0..end_{r-1}] as in ONNX. */
  readonly pads?: ReadonlyArray<number>
  /** Constant: the data, row-major. */
  readonly data?: ReadonlyArray<number>
}

export interface Value {
  readonly id: number
  readonly name: string
  readonly dtype: DType
  readonly shape: Shape
  /** The node producing this value. */
  readonly node: Node
}

export interface Node {
  readonly id: number
  readonly op: OpType
  readonly inputs: ReadonlyArray<Value>
  readonly attrs: Attrs
  readonly name: string
}

/** A graph that cannot be built: bad shapes, a missing gradient rule, a duplicate name. */
export class GraphError extends Error {
  readonly _tag = "GraphError"
  constructor(
    readonly reason: "ShapeMismatch" | "MissingGradientRule" | "Unsupported" | "DuplicateName" | "BadArgument",
    readonly where: string,
    detail: string
  ) {
    super(`${reason} at ${where}: ${detail}`)
  }
}

export const isFloat = (d: DType): boolean => d === "float32" || d === "float64"

const normAxis = (axis: number, rank: number): number => (axis < 0 ? axis + rank : axis)

/** Numpy broadcasting of two shapes; a symbolic dim against a number n > 1 is taken to be n. */
export const broadcastShapes = (a: Shape, b: Shape, where: string): Shape => {
  const rank = Math.max(a.length, b.length)
  const out: Array<Dim> = []
  for (let i = 0; i < rank; i++) {
    const da = a[a.length - rank + i] ?? 1
    const db = b[b.length - rank + i] ?? 1
    if (da === db || db === 1) out.push(da)
    else if (da === 1) out.push(db)
    else if (typeof da === "string" && typeof db === "number") out.push(db)
    else if (typeof db === "string" && typeof da === "number") out.push(da)
    else if (typeof da === "string" && typeof db === "string") out.push(da)
    else throw new GraphError("ShapeMismatch", where, `cannot broadcast [${a.join(",")}] with [${b.join(",")}]`)
  }
  return out
}

export class Graph {
  readonly nodes: Array<Node> = []
  readonly values: Array<Value> = []
  readonly inputs: Array<Value> = []
  readonly outputs: Array<{ readonly name: string; readonly value: Value }> = []
  private readonly names = new Set<string>()

  private addNode(op: OpType, inputs: ReadonlyArray<Value>, dtype: DType, shape: Shape, attrs: Attrs = {}, name?: string): Value {
    const id = this.values.length
    const valueName = name ?? `${op.toLowerCase()}_${id}`
    if (this.names.has(valueName)) throw new GraphError("DuplicateName", valueName, "value names must be unique")
    this.names.add(valueName)
    const node: Node = { id, op, inputs, attrs, name: `${op}_${id}` }
    const value: Value = { id, name: valueName, dtype, shape, node }
    this.nodes.push(node)
    this.values.push(value)
    return value
  }

  // ---- sources --------------------------------------------------------------------------

  /** A graph input: data, or a weight (weights are inputs so an update needs no rebuild). */
  input(name: string, dtype: DType, shape: Shape): Value {
    const v = this.addNode("Input", [], dtype, shape, {}, name)
    this.inputs.push(v)
    return v
  }

  /** A constant tensor (row-major data); a number gives a scalar. */
  constant(data: number | ReadonlyArray<number>, dtype: DType, shape?: Shape): Value {
    const arr = typeof data === "number" ? [data] : data
    const s = shape ?? (typeof data === "number" ? [] : [arr.length])
    return this.addNode("Constant", [], dtype, s, { data: arr })
  }

  /** Marks `value` as a graph output under `name`. */
  output(name: string, value: Value): void {
    if (this.outputs.some((o) => o.name === name)) throw new GraphError("DuplicateName", name, "output names must be unique")
    this.outputs.push({ name, value })
  }

  // ---- elementwise ----------------------------------------------------------------------

  private binary(op: OpType, a: Value, b: Value): Value {
    if (a.dtype !== b.dtype) throw new GraphError("BadArgument", op, `dtype ${a.dtype} vs ${b.dtype}`)
    const out = op === "Greater" || op === "Less" || op === "Equal" ? "bool" : a.dtype
    return this.addNode(op, [a, b], out, broadcastShapes(a.shape, b.shape, op))
  }
  private unary(op: OpType, x: Value, attrs: Attrs = {}): Value {
    return this.addNode(op, [x], x.dtype, x.shape, attrs)
  }

  add(a: Value, b: Value): Value { return this.binary("Add", a, b) }
  sub(a: Value, b: Value): Value { return this.binary("Sub", a, b) }
  mul(a: Value, b: Value): Value { return this.binary("Mul", a, b) }
  div(a: Value, b: Value): Value { return this.binary("Div", a, b) }
  greater(a: Value, b: Value): Value { return this.binary("Greater", a, b) }
  less(a: Value, b: Value): Value { return this.binary("Less", a, b) }
  equal(a: Value, b: Value): Value { return this.binary("Equal", a, b) }
  neg(x: Value): Value { return this.unary("Neg", x) }
  exp(x: Value): Value { return this.unary("Exp", x) }
  log(x: Value): Value { return this.unary("Log", x) }
  sqrt(x: Value): Value { return this.unary("Sqrt", x) }
  sin(x: Value): Value { return this.unary("Sin", x) }
  cos(x: Value): Value { return this.unary("Cos", x) }
  tanh(x: Value): Value { return this.unary("Tanh", x) }
  sigmoid(x: Value): Value { return this.unary("Sigmoid", x) }
  relu(x: Value): Value { return this.unary("Relu", x) }
  identity(x: Value): Value { return this.unary("Identity", x) }
  /** x ** exponent, with a constant exponent. */
  pow(x: Value, exponent: number): Value { return this.unary("Pow", x, { exponent }) }
  /** A scalar constant of x's dtype. */
  scalar(x: Value, v: number): Value { return this.constant(v, x.dtype) }

  /** cond ? a : b, broadcasting all three. */
  where(cond: Value, a: Value, b: Value): Value {
    if (cond.dtype !== "bool") throw new GraphError("BadArgument", "Where", "condition must be bool")
    if (a.dtype !== b.dtype) throw new GraphError("BadArgument", "Where", `dtype ${a.dtype} vs ${b.dtype}`)
    const s = broadcastShapes(broadcastShapes(cond.shape, a.shape, "Where"), b.shape, "Where")
    return this.addNode("Where", [cond, a, b], a.dtype, s)
  }

  cast(x: Value, to: DType): Value { return this.addNode("Cast", [x], to, x.shape, { to }) }

  // ---- linear algebra -------------------------------------------------------------------

  /** [..., M, K] @ [..., K, N] -> [..., M, N], batch dims broadcast. Both ranks must be >= 2. */
  matmul(a: Value, b: Value): Value {
    if (a.shape.length < 2 || b.shape.length < 2) throw new GraphError("Unsupported", "MatMul", "operands need rank >= 2")
    if (a.dtype !== b.dtype) throw new GraphError("BadArgument", "MatMul", `dtype ${a.dtype} vs ${b.dtype}`)
    const ka = a.shape[a.shape.length - 1]!
    const kb = b.shape[b.shape.length - 2]!
    if (typeof ka === "number" && typeof kb === "number" && ka !== kb) throw new GraphError("ShapeMismatch", "MatMul", `K ${ka} vs ${kb}`)
    const batch = broadcastShapes(a.shape.slice(0, -2), b.shape.slice(0, -2), "MatMul")
    return this.addNode("MatMul", [a, b], a.dtype, [...batch, a.shape[a.shape.length - 2]!, b.shape[b.shape.length - 1]!])
  }

  // ---- reductions -----------------------------------------------------------------------

  private reduce(op: "ReduceSum" | "ReduceMean", x: Value, axes: ReadonlyArray<number>, keepdims: boolean): Value {
    const r = x.shape.length
    const ax = axes.map((a) => normAxis(a, r)).sort((p, q) => p - q)
    const shape: Array<Dim> = []
    x.shape.forEach((d, i) => {
      if (!ax.includes(i)) shape.push(d)
      else if (keepdims) shape.push(1)
    })
    return this.addNode(op, [x], x.dtype, shape, { axes: ax, keepdims })
  }
  reduceSum(x: Value, axes: ReadonlyArray<number>, keepdims = false): Value { return this.reduce("ReduceSum", x, axes, keepdims) }
  reduceMean(x: Value, axes: ReadonlyArray<number>, keepdims = false): Value { return this.reduce("ReduceMean", x, axes, keepdims) }
  /** Softmax over the last axis. */
  softmax(x: Value): Value { return this.unary("Softmax", x, { axis: -1 }) }
  /** LogSoftmax over the last axis. */
  logSoftmax(x: Value): Value { return this.unary("LogSoftmax", x, { axis: -1 }) }

  // ---- shape ----------------------------------------------------------------------------

  /**
   * Reshape to a static target (ONNX semantics: 0 copies the input dim, -1 is inferred), or to a
   * run-time int64 shape value together with the shape it is known to have.
   */
  reshape(x: Value, target: ReadonlyArray<number> | { readonly shape: Value; readonly as: Shape }): Value {
    if (!Array.isArray(target)) {
      const t = target as { readonly shape: Value; readonly as: Shape }
      return this.addNode("Reshape", [x, t.shape], x.dtype, t.as)
    }
    const dims = target as ReadonlyArray<number>
    const shape: Array<Dim> = dims.map((d, i) => (d === 0 ? x.shape[i]! : d))
    const minus = shape.indexOf(-1)
    if (minus >= 0) {
      const known = shape.filter((d, i) => i !== minus)
      const total = x.shape.every((d) => typeof d === "number") ? (x.shape as ReadonlyArray<number>).reduce((p, q) => p * q, 1) : undefined
      const rest = known.every((d) => typeof d === "number") ? (known as ReadonlyArray<number>).reduce((p, q) => p * q, 1) : undefined
      shape[minus] = total !== undefined && rest !== undefined ? total / rest : `${x.name}_reshape${this.values.length}`
    }
    const shapeConst = this.constant(dims, "int64", [dims.length])
    return this.addNode("Reshape", [x, shapeConst], x.dtype, shape)
  }

  transpose(x: Value, perm: ReadonlyArray<number>): Value {
    if (perm.length !== x.shape.length) throw new GraphError("BadArgument", "Transpose", "perm length must equal rank")
    return this.addNode("Transpose", [x], x.dtype, perm.map((p) => x.shape[p]!), { perm })
  }

  /** Swaps the last two axes. */
  transposeLast2(x: Value): Value {
    const r = x.shape.length
    const perm = Array.from({ length: r }, (_, i) => i)
    perm[r - 2] = r - 1
    perm[r - 1] = r - 2
    return this.transpose(x, perm)
  }

  /** data[indices] along axis 0 (an embedding lookup): [V, ...rest] x [...I] -> [...I, ...rest]. */
  gather(data: Value, indices: Value): Value {
    if (indices.dtype !== "int64") throw new GraphError("BadArgument", "Gather", "indices must be int64")
    return this.addNode("Gather", [data, indices], data.dtype, [...indices.shape, ...data.shape.slice(1)], { axis: 0 })
  }

  unsqueeze(x: Value, axes: ReadonlyArray<number>): Value {
    const r = x.shape.length + axes.length
    const ax = axes.map((a) => normAxis(a, r))
    const shape: Array<Dim> = []
    let j = 0
    for (let i = 0; i < r; i++) shape.push(ax.includes(i) ? 1 : x.shape[j++]!)
    return this.addNode("Unsqueeze", [x], x.dtype, shape, { axes: ax })
  }

  concat(xs: ReadonlyArray<Value>, axis: number): Value {
    const first = xs[0]
    if (first === undefined) throw new GraphError("BadArgument", "Concat", "needs at least one input")
    const ax = normAxis(axis, first.shape.length)
    const sizes = xs.map((x) => x.shape[ax]!)
    const total: Dim = sizes.every((d) => typeof d === "number")
      ? (sizes as ReadonlyArray<number>).reduce((p, q) => p + q, 0)
      : `concat${this.values.length}`
    const shape = first.shape.map((d, i) => (i === ax ? total : d))
    return this.addNode("Concat", xs, first.dtype, shape, { axis: ax })
  }

  /**
   * x[starts:ends] on `axes`, step 1 (ONNX semantics: negative indices count from the end). On an
   * axis of symbolic size the indices are passed through and the result gets a new symbolic size;
   * such a slice has no gradient (its rule needs static sizes), which inference graphs do not need.
   */
  slice(x: Value, starts: ReadonlyArray<number>, ends: ReadonlyArray<number>, axes: ReadonlyArray<number>): Value {
    const ax = axes.map((a) => normAxis(a, x.shape.length))
    const st: Array<number> = []
    const en: Array<number> = []
    const shape = [...x.shape]
    ax.forEach((a, k) => {
      const d = x.shape[a]
      if (typeof d !== "number") {
        st.push(starts[k]!)
        en.push(ends[k]!)
        shape[a] = `${d}_slice${this.values.length}`
        return
      }
      const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + d : v, 0), d)
      const s = clamp(starts[k]!)
      const e = Math.max(clamp(ends[k]!), s)
      st.push(s)
      en.push(e)
      shape[a] = e - s
    })
    return this.addNode("Slice", [x], x.dtype, shape, { starts: st, ends: en, axes: ax })
  }

  /** Zero padding: pads = [begin_0..begin_{r-1}, end_0..end_{r-1}]. */
  pad(x: Value, pads: ReadonlyArray<number>): Value {
    const r = x.shape.length
    const shape = x.shape.map((d, i) => {
      const extra = pads[i]! + pads[i + r]!
      return extra === 0 ? d : typeof d === "number" ? d + extra : `${d}+${extra}`
    })
    return this.addNode("Pad", [x], x.dtype, shape, { pads })
  }

  /** The run-time shape of x as an int64 vector. */
  shapeOf(x: Value): Value { return this.addNode("Shape", [x], "int64", [x.shape.length]) }
  /** The run-time element count of x as an int64 scalar. */
  sizeOf(x: Value): Value { return this.addNode("Size", [x], "int64", []) }

  /** Broadcasts x to the run-time shape `shape`, known statically as `as`. */
  expand(x: Value, shape: Value, as: Shape): Value { return this.addNode("Expand", [x, shape], x.dtype, as) }

  /** A copy of data with updates added at rows indices[..., 0] (ONNX ScatterND, reduction "add"). */
  scatterNDAdd(data: Value, indices: Value, updates: Value): Value {
    return this.addNode("ScatterNDAdd", [data, indices, updates], data.dtype, data.shape)
  }

  /**
   * A copy of data with updates[i][j] added at data[indices[i][j]][j] (ONNX ScatterElements on
   * axis 0, reduction "add"): onnxruntime's CPU kernel adds the updates one by one in index
   * order, so rows gathered several times sum in a fixed order (checked by Transformer.test.ts).
   */
  scatterElementsAdd(data: Value, indices: Value, updates: Value): Value {
    return this.addNode("ScatterElementsAdd", [data, indices, updates], data.dtype, data.shape)
  }

  /** [start, start + delta, ...) below limit, from scalar values (no gradient: for index arithmetic). */
  range(start: Value, limit: Value, delta: Value): Value {
    return this.addNode("Range", [start, limit, delta], start.dtype, [`range${this.values.length}`])
  }

  /** Zeros of x's dtype and run-time shape. */
  zerosLike(x: Value): Value { return this.expand(this.scalar(x, 0), this.shapeOf(x), x.shape) }
}
