/**
 * The key/value cache of one sampler (StoryModel.sampler), shared by every `generate` call in
 * flight on it: their rows are decoded together, so a worker holding a step's requests runs one
 * decoding run per step of all of them instead of one per request.
 *
 * A row's numbers depend only on the row: each distinct prompt is prefilled alone, and on one
 * onnxruntime thread a decoding run's result for a row is the same bits in every batch of 2 rows
 * or more, whatever the other rows, their places or the cache's capacity, while a lone row takes
 * another kernel path (test/BatchInvariance.test.ts). So a batch of one row gets a dummy
 * companion, and which requests share a run changes no bit of any of them.
 *
 * Rows are bucketed by cache capacity (multiples of CACHE_CHUNK positions), one run per bucket:
 * a run's attention reads every row's cache as long as the run's capacity, so a short row in a
 * long row's run pays for the long row's length (one capacity for all of a worker's rows measured
 * slower than one request per run: a quickstart's rollouts 203 s instead of 108 s). A row moves up
 * a bucket when it outgrows its capacity, which costs one copy of its cache per CACHE_CHUNK tokens.
 *
 * A bucket holds keys as Kᵀ [slots, H, D, C] and values [slots, H, C, D]; `filled` positions of
 * a row's slot hold its tokens so far, the rest are masked. Finished rows free their slot
 * (still fed a dummy token until a quarter of the slots are free, then the bucket is compacted).
 *
 * @example
 * const batch = new KvBatch(config, prefill, decode)
 * const [a, b] = await Promise.all([generate(batch.decoder(), promptsA, ...), generate(batch.decoder(), promptsB, ...)])
 */
import type { Decoder, NextToken } from "./Generate.ts"
import * as Onnx from "./graph/Onnx.ts"
import { headDim, MASKED, type ModelConfig } from "./Transformer.ts"

/** Bucket capacities are multiples of this many positions. */
const CACHE_CHUNK = 128

/**
 * Row-positions of attention reads that cost about one decoding run: fitted over a quickstart's
 * 26,332 runs (story-1m, one thread), a run took 0.96 ms + 0.082 ms per slot + 0.0002 ms per slot
 * and cache position, so a separate run for a few short rows costs more than running them in a
 * longer bucket's run (mergeUp).
 */
const MERGE_LIMIT = 4096

/** The prefill graph's run on one prompt: per layer `key.l` [1, H, D, T] and `value.l` [1, H, T, D], and `logits`, `probs` [1, V]. */
export type Prefill = (prompt: ReadonlyArray<number>) => Promise<Record<string, Onnx.TensorData>>

interface Row {
  /** Positions of its slot that hold its tokens. */
  filled: number
  bucket: Bucket
  slot: number
}

/** Where a row's cache is read from when it is copied into a slot. */
interface CacheSource {
  readonly keys: ReadonlyArray<Float32Array>
  readonly values: ReadonlyArray<Float32Array>
  readonly cap: number
  readonly slot: number
}

/** A bucket's cache (keys, values), for `room` slots. */
interface Buffers {
  readonly room: number
  readonly keys: Array<Float32Array>
  readonly values: Array<Float32Array>
}

/**
 * Buffers of emptied buckets, kept (per thread) for the next bucket of their shape: each policy
 * version's sampler builds its buckets afresh, and fresh memory costs a page fault per page on
 * first touch (measured on fresh buffers: a row's move up a bucket 2 ms, most of it growing the
 * bucket it joins).
 */
const spare = new Map<string, Array<Buffers>>()
/** Floats of spare buffers kept per thread (128 MB). */
const SPARE_FLOATS = 32 * 1024 * 1024
let spareFloats = 0
const floatsOf = (b: Buffers) => [...b.keys, ...b.values].reduce((n, a) => n + a.length, 0)

/** The rows whose caches hold up to `cap` positions, decoded in one run. */
class Bucket {
  /** The row in each slot; undefined: free (a dummy row in runs). Never fewer than 2: no run has a lone row. */
  readonly slots: Array<Row | undefined> = [undefined, undefined]
  private buffers: Buffers
  /** Floats per slot in each layer's keys (and values): H × D × cap. */
  private readonly block: number
  private readonly shape: string
  private readonly H: number
  private readonly D: number

  constructor(readonly cap: number, private readonly config: ModelConfig) {
    this.H = config.nHeads
    this.D = headDim(config)
    this.block = this.H * this.D * cap
    this.shape = [cap, config.nLayers, this.H, this.D].join(":")
    const kept = spare.get(this.shape)?.pop()
    if (kept !== undefined) spareFloats -= floatsOf(kept)
    this.buffers = kept ?? this.allocate(4)
  }

  get keys(): ReadonlyArray<Float32Array> {
    return this.buffers.keys
  }

  get values(): ReadonlyArray<Float32Array> {
    return this.buffers.values
  }

  private allocate(room: number, old?: Buffers): Buffers {
    const sized = (from: Float32Array | undefined) => {
      const a = new Float32Array(room * this.block)
      if (from !== undefined) a.set(from)
      return a
    }
    return {
      room,
      keys: Array.from({ length: this.config.nLayers }, (_, l) => sized(old?.keys[l])),
      values: Array.from({ length: this.config.nLayers }, (_, l) => sized(old?.values[l]))
    }
  }

  /** Gives the buffers up for a later bucket of the same shape (the bucket is not used again). */
  retire(): void {
    const n = floatsOf(this.buffers)
    if (spareFloats + n > SPARE_FLOATS) return
    spareFloats += n
    const list = spare.get(this.shape) ?? []
    list.push(this.buffers)
    spare.set(this.shape, list)
  }

  get live(): number {
    return this.slots.reduce((n, r) => n + (r === undefined ? 0 : 1), 0)
  }

  /**
   * Puts `row` in a free slot, growing the buffers when none is free. The slot keeps what its
   * last row left past `filled`: masked positions weigh exactly 0 whatever finite values they hold.
   */
  take(row: Row): void {
    let slot = this.slots.indexOf(undefined)
    if (slot < 0) {
      slot = this.slots.length
      this.slots.push(undefined)
      if (this.slots.length > this.buffers.room) this.buffers = this.allocate(this.buffers.room * 2, this.buffers)
    }
    this.slots[slot] = row
    row.bucket = this
    row.slot = slot
  }

  /** Copies `n` positions of a row's cache from `src` into `slot`. */
  copyIn(slot: number, src: CacheSource, n: number): void {
    const { H, D, cap } = this
    for (let l = 0; l < this.config.nLayers; l++) {
      for (let h = 0; h < H; h++) {
        for (let d = 0; d < D; d++) {
          const k = ((src.slot * H + h) * D + d) * src.cap
          this.keys[l]!.set(src.keys[l]!.subarray(k, k + n), ((slot * H + h) * D + d) * cap)
        }
        const v = (src.slot * H + h) * src.cap * D
        this.values[l]!.set(src.values[l]!.subarray(v, v + n * D), (slot * H + h) * cap * D)
      }
    }
  }

  /** Moves live rows down over free slots when a quarter or more are free (at least 2 slots stay). */
  compact(): void {
    const live = this.live
    if (this.slots.length <= 2 || (this.slots.length - live) * 4 < this.slots.length) return
    const rows = this.slots.filter((r): r is Row => r !== undefined)
    rows.forEach((row, to) => {
      if (row.slot === to) return
      for (const a of [...this.buffers.keys, ...this.buffers.values]) a.copyWithin(to * this.block, row.slot * this.block, (row.slot + 1) * this.block)
      row.slot = to
    })
    this.slots.length = 0
    this.slots.push(...rows, ...Array.from({ length: Math.max(0, 2 - rows.length) }, () => undefined))
  }
}

/** One `generate` call's rows (undefined once finished). */
interface Call {
  readonly rows: Array<Row | undefined>
}

interface StepRequest {
  readonly call: Call
  readonly rows: ReadonlyArray<number>
  readonly tokens: ReadonlyArray<number>
  readonly resolve: (next: NextToken) => void
  readonly reject: (error: unknown) => void
}

export class KvBatch {
  private readonly buckets = new Map<number, Bucket>()
  private pending: Array<StepRequest> = []
  private scheduled = false
  /** Bucket changes and runs, one at a time. */
  private lock: Promise<unknown> = Promise.resolve()

  constructor(private readonly config: ModelConfig, private readonly prefill: Prefill, private readonly decode: Onnx.Runner) {}

  /** A Decoder for one `generate` call, whose rows join this batch's runs. */
  decoder(): Decoder {
    const call: Call = { rows: [] }
    const { nLayers: L, vocabSize: V } = this.config
    return {
      start: async (prompts) => {
        const keyOf = (p: ReadonlyArray<number>) => p.join(",")
        const unique = [...new Map(prompts.map((p) => [keyOf(p), p])).values()]
        const index = new Map(unique.map((p, i) => [keyOf(p), i]))
        const prefilled: Array<Record<string, Onnx.TensorData>> = []
        for (const p of unique) prefilled.push(await this.prefill(p))
        const of = (r: number) => prefilled[index.get(keyOf(prompts[r]!))!]!
        await this.exclusive(() => {
          prompts.forEach((p, r) => {
            const row = { filled: p.length } as Row
            this.bucketFor(p.length + 1).take(row)
            const res = of(r)
            const f32 = (name: string) => res[name]!.data as Float32Array
            const source = {
              keys: Array.from({ length: L }, (_, l) => f32(`key.${l}`)),
              values: Array.from({ length: L }, (_, l) => f32(`value.${l}`)),
              cap: p.length,
              slot: 0
            }
            row.bucket.copyIn(row.slot, source, p.length)
            call.rows.push(row)
          })
        })
        const pick = (name: string) => (r: number) => (of(r)[name]!.data as Float32Array).subarray(0, V)
        return { logits: pick("logits"), probs: pick("probs") }
      },
      step: (rows, tokens) =>
        new Promise<NextToken>((resolve, reject) => {
          this.pending.push({ call, rows, tokens, resolve, reject })
          if (!this.scheduled) {
            this.scheduled = true
            // After the current turn's microtasks: every call answered by the last run has asked again by then.
            setImmediate(() => {
              this.scheduled = false
              void this.exclusive(() => this.flush())
            })
          }
        }),
      end: () => {
        void this.exclusive(() => {
          call.rows.forEach((row, r) => {
            if (row !== undefined) this.free(row)
            call.rows[r] = undefined
          })
        })
      }
    }
  }

  private exclusive<A>(f: () => A | Promise<A>): Promise<A> {
    const run = this.lock.then(f)
    this.lock = run.catch(() => undefined)
    return run
  }

  private bucketFor(need: number): Bucket {
    const cap = Math.min(Math.ceil(need / CACHE_CHUNK) * CACHE_CHUNK, this.config.maxContext)
    let b = this.buckets.get(cap)
    if (b === undefined) this.buckets.set(cap, (b = new Bucket(cap, this.config)))
    return b
  }

  private free(row: Row): void {
    row.bucket.slots[row.slot] = undefined
    if (row.bucket.live === 0) {
      this.buckets.delete(row.bucket.cap)
      row.bucket.retire()
    }
  }

  /** Moves a row's cache into a slot of `to` (the bucket it leaves is retired once empty). */
  private move(row: Row, to: Bucket): void {
    const from = row.bucket
    const source = { keys: from.keys, values: from.values, cap: from.cap, slot: row.slot }
    this.free(row)
    to.take(row)
    to.copyIn(row.slot, source, row.filled)
  }

  /**
   * Moves the stepping rows of a bucket into the next larger bucket that steps too, from the
   * smallest up, while the rows' extra attention reads cost less than the run they save: rows ×
   * (capacity gained) under MERGE_LIMIT. A row's numbers do not depend on its bucket's capacity
   * (see above), so this changes only the time.
   */
  private mergeUp(token: ReadonlyMap<Row, number>): void {
    const stepping = [...new Set([...token.keys()].map((r) => r.bucket))].sort((a, b) => a.cap - b.cap)
    for (let i = 0; i + 1 < stepping.length; i++) {
      const [from, to] = [stepping[i]!, stepping[i + 1]!]
      const rows = from.slots.filter((r): r is Row => r !== undefined && token.has(r))
      if (rows.length * (to.cap - from.cap) >= MERGE_LIMIT) continue
      for (const row of rows) this.move(row, to)
    }
  }

  /** Runs every waiting step: one decoding run per bucket holding one of their rows. */
  private async flush(): Promise<void> {
    const requests = this.pending
    this.pending = []
    try {
      const { nLayers: L, nHeads: H, vocabSize: V, maxContext } = this.config
      const D = headDim(this.config)
      const token = new Map<Row, number>()
      for (const q of requests) {
        // Rows a call no longer lists have finished.
        const listed = new Set(q.rows)
        q.call.rows.forEach((row, r) => {
          if (row !== undefined && !listed.has(r)) {
            this.free(row)
            q.call.rows[r] = undefined
          }
        })
        q.rows.forEach((r, i) => {
          const row = q.call.rows[r]!
          if (row.filled + 1 > row.bucket.cap) this.move(row, this.bucketFor(row.filled + 1))
          token.set(row, q.tokens[i]!)
        })
      }
      this.mergeUp(token)
      const out = new Map<Row, { readonly res: Record<string, Onnx.TensorData>; readonly at: number }>()
      for (const bucket of new Set([...token.keys()].map((r) => r.bucket))) {
        bucket.compact()
        const { slots, cap: C } = bucket
        const B = slots.length
        const mask = new Float32Array(B * C).fill(MASKED)
        slots.forEach((row, b) => {
          if (row !== undefined && token.has(row)) mask.fill(0, b * C, b * C + row.filled)
        })
        const res = await this.decode({
          tokens: Onnx.int64(slots.map((row) => (row === undefined ? 0 : (token.get(row) ?? 0))), [B, 1]),
          positions: Onnx.int64(slots.map((row) => (row !== undefined && token.has(row) ? Math.min(row.filled, maxContext - 1) : 0)), [B, 1]),
          mask: { data: mask, dims: [B, 1, 1, C] },
          ...Object.fromEntries(Array.from({ length: L }, (_, l) => [
            [`past_key.${l}`, { data: bucket.keys[l]!.subarray(0, B * H * D * C), dims: [B, H, D, C] }],
            [`past_value.${l}`, { data: bucket.values[l]!.subarray(0, B * H * C * D), dims: [B, H, C, D] }]
          ]).flat())
        })
        // Each stepped row's new key and value go into its slot's next position.
        slots.forEach((row, b) => {
          if (row === undefined || !token.has(row)) return
          const at = row.filled
          for (let l = 0; l < L; l++) {
            const k = res[`key.${l}`]!.data as Float32Array
            const v = res[`value.${l}`]!.data as Float32Array
            for (let h = 0; h < H; h++) {
              const src = (b * H + h) * D
              for (let d = 0; d < D; d++) bucket.keys[l]![((b * H + h) * D + d) * C + at] = k[src + d]!
              bucket.values[l]!.set(v.subarray(src, src + D), ((b * H + h) * C + at) * D)
            }
          }
          row.filled++
          out.set(row, { res, at: b })
        })
      }
      for (const q of requests) {
        const at = q.rows.map((r) => out.get(q.call.rows[r]!)!)
        const pick = (name: string) => (i: number) => (at[i]!.res[name]!.data as Float32Array).subarray(at[i]!.at * V, (at[i]!.at + 1) * V)
        q.resolve({ logits: pick("logits"), probs: pick("probs") })
      }
    } catch (e) {
      for (const q of requests) q.reject(e)
    }
  }
}
