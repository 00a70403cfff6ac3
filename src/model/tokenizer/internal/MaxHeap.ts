/**
 * Binary max-heap of (count, key) number pairs: larger count first, then smaller key.
 * Used by the BPE trainer to find the most frequent pair; entries are never updated in place
 * (the trainer pushes a fresh entry and skips stale ones when popped).
 */
export class MaxHeap {
  private counts: Array<number> = []
  private keys: Array<number> = []

  get size(): number {
    return this.counts.length
  }

  private above(i: number, j: number): boolean {
    const ci = this.counts[i]!
    const cj = this.counts[j]!
    return ci > cj || (ci === cj && this.keys[i]! < this.keys[j]!)
  }

  private swap(i: number, j: number): void {
    const c = this.counts[i]!
    this.counts[i] = this.counts[j]!
    this.counts[j] = c
    const k = this.keys[i]!
    this.keys[i] = this.keys[j]!
    this.keys[j] = k
  }

  push(count: number, key: number): void {
    this.counts.push(count)
    this.keys.push(key)
    let i = this.counts.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!this.above(i, p)) break
      this.swap(i, p)
      i = p
    }
  }

  pop(): [count: number, key: number] | undefined {
    const n = this.counts.length
    if (n === 0) return undefined
    const top: [number, number] = [this.counts[0]!, this.keys[0]!]
    this.swap(0, n - 1)
    this.counts.pop()
    this.keys.pop()
    let i = 0
    const m = n - 1
    for (;;) {
      const l = 2 * i + 1
      const r = l + 1
      let best = i
      if (l < m && this.above(l, best)) best = l
      if (r < m && this.above(r, best)) best = r
      if (best === i) break
      this.swap(i, best)
      i = best
    }
    return top
  }
}
