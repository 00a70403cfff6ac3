/**
 * Tiny inline SVG charts for the run report: a line chart (training curves) and a grouped bar
 * chart (one bar per system per bucket). No dependencies, no fonts, no scripts; every text is escaped.
 * The SVG is meant to be inlined in an HTML5 document (so it carries no namespace URL).
 */

/** A fixed palette (colour-blind friendly, Okabe-Ito). */
export const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"] as const

/** Escapes text for HTML / SVG text and attribute values. */
export const escapeXml = (s: string): string =>
  s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;").replace(/'/g, "&#39;")

const colour = (i: number): string => PALETTE[i % PALETTE.length]!

/** A number as an SVG coordinate (2 decimals, no exponent). */
const c = (x: number): string => (Math.round(x * 100) / 100).toString()

/** "Nice" ticks covering [lo, hi]: about `count` of them, on 1/2/5 × 10^k steps. */
export const niceTicks = (lo: number, hi: number, count = 5, integer = false): { ticks: Array<number>; lo: number; hi: number; decimals: number } => {
  if (!Number.isFinite(lo) || !Number.isFinite(hi)) return { ticks: [0, 1], lo: 0, hi: 1, decimals: 0 }
  if (hi === lo) {
    const pad = lo === 0 ? 1 : Math.abs(lo) * 0.1
    lo -= pad
    hi += pad
  }
  const raw = (hi - lo) / Math.max(1, count)
  const mag = 10 ** Math.floor(Math.log10(raw))
  const norm = raw / mag
  const step = Math.max(integer ? 1 : 0, (norm <= 1 ? 1 : norm <= 2 ? 2 : norm <= 5 ? 5 : 10) * mag)
  const start = Math.floor(lo / step) * step
  const end = Math.ceil(hi / step) * step
  const ticks: Array<number> = []
  for (let t = start; t <= end + step / 2; t += step) ticks.push(Math.abs(t) < step / 1e6 ? 0 : t)
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9))
  return { ticks, lo: start, hi: end, decimals: Math.min(decimals, 6) }
}

const fmtTick = (x: number, decimals: number) => x.toFixed(decimals)

export interface Series {
  readonly name: string
  readonly points: ReadonlyArray<readonly [number, number]>
}

export interface LineChartOptions {
  readonly title: string
  readonly series: ReadonlyArray<Series>
  readonly xLabel: string
  readonly yLabel: string
  readonly width?: number
  readonly height?: number
}

interface Frame {
  readonly width: number
  readonly height: number
  readonly left: number
  readonly right: number
  readonly top: number
  readonly bottom: number
}

const frameOf = (width: number, height: number, legendRows: number): Frame => ({
  width,
  height,
  left: 64,
  right: width - 16,
  top: 30 + legendRows * 16 + 8,
  bottom: height - 42
})

/** Legend items laid out in rows across the width; returns the SVG and the rows used. */
const legend = (names: ReadonlyArray<string>, width: number): { svg: string; rows: number } => {
  let x = 64
  let row = 0
  const parts: Array<string> = []
  names.forEach((name, i) => {
    const w = 22 + Math.min(name.length, 40) * 6.5 + 14
    if (x + w > width - 8 && x > 64) {
      row++
      x = 64
    }
    const y = 34 + row * 16
    parts.push(`<rect x="${c(x)}" y="${c(y - 9)}" width="14" height="10" fill="${colour(i)}"/>`)
    parts.push(`<text x="${c(x + 18)}" y="${c(y)}" font-size="11">${escapeXml(name.length > 40 ? name.slice(0, 39) + "…" : name)}</text>`)
    x += w
  })
  return { svg: parts.join(""), rows: names.length === 0 ? 0 : row + 1 }
}

const open = (f: Frame, title: string) =>
  `<svg class="chart" width="${f.width}" height="${f.height}" viewBox="0 0 ${f.width} ${f.height}" role="img" aria-label="${escapeXml(title)}" font-family="sans-serif">` +
  `<title>${escapeXml(title)}</title>` +
  `<rect x="0" y="0" width="${f.width}" height="${f.height}" fill="#ffffff"/>` +
  `<text x="${c(f.width / 2)}" y="18" text-anchor="middle" font-size="13" font-weight="bold">${escapeXml(title)}</text>`

const yAxis = (f: Frame, ticks: ReturnType<typeof niceTicks>, yLabel: string, y: (v: number) => number) =>
  ticks.ticks.map((t) =>
    `<line x1="${f.left}" x2="${f.right}" y1="${c(y(t))}" y2="${c(y(t))}" stroke="#e5e5e5"/>` +
    `<text x="${f.left - 6}" y="${c(y(t) + 4)}" text-anchor="end" font-size="10">${escapeXml(fmtTick(t, ticks.decimals))}</text>`
  ).join("") +
  `<line x1="${f.left}" x2="${f.left}" y1="${f.top}" y2="${f.bottom}" stroke="#333"/>` +
  `<text x="14" y="${c((f.top + f.bottom) / 2)}" text-anchor="middle" font-size="11" transform="rotate(-90 14 ${c((f.top + f.bottom) / 2)})">${escapeXml(yLabel)}</text>`

/** A line chart: one polyline (with point markers) per series, axes with ticks, a legend. */
export const lineChart = (o: LineChartOptions): string => {
  const width = o.width ?? 520
  const height = o.height ?? 300
  const series = o.series
    .map((s) => ({ name: s.name, points: s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)) }))
    .filter((s) => s.points.length > 0)
  const lg = legend(series.map((s) => s.name), width)
  const f = frameOf(width, height, lg.rows)
  const xs = series.flatMap((s) => s.points.map((p) => p[0]))
  const ys = series.flatMap((s) => s.points.map((p) => p[1]))
  if (xs.length === 0) {
    return open(f, o.title) + `<text x="${c(width / 2)}" y="${c(height / 2)}" text-anchor="middle" font-size="12" fill="#777">no data</text></svg>`
  }
  const xt = niceTicks(Math.min(...xs), Math.max(...xs), 6, xs.every(Number.isInteger))
  const yt = niceTicks(Math.min(...ys), Math.max(...ys), 5)
  const x = (v: number) => f.left + ((v - xt.lo) / (xt.hi - xt.lo)) * (f.right - f.left)
  const y = (v: number) => f.bottom - ((v - yt.lo) / (yt.hi - yt.lo)) * (f.bottom - f.top)
  const xAxis =
    `<line x1="${f.left}" x2="${f.right}" y1="${f.bottom}" y2="${f.bottom}" stroke="#333"/>` +
    xt.ticks.map((t) =>
      `<line x1="${c(x(t))}" x2="${c(x(t))}" y1="${f.bottom}" y2="${f.bottom + 4}" stroke="#333"/>` +
      `<text x="${c(x(t))}" y="${f.bottom + 16}" text-anchor="middle" font-size="10">${escapeXml(fmtTick(t, xt.decimals))}</text>`
    ).join("") +
    `<text x="${c((f.left + f.right) / 2)}" y="${height - 6}" text-anchor="middle" font-size="11">${escapeXml(o.xLabel)}</text>`
  const lines = series.map((s, i) => {
    const pts = [...s.points].sort((a, b) => a[0] - b[0])
    const path = pts.length > 1 ? `<polyline fill="none" stroke="${colour(i)}" stroke-width="2" points="${pts.map(([px, py]) => `${c(x(px))},${c(y(py))}`).join(" ")}"/>` : ""
    const marks = pts.map(([px, py]) => `<circle cx="${c(x(px))}" cy="${c(y(py))}" r="2.5" fill="${colour(i)}"><title>${escapeXml(`${s.name}: ${px}, ${py}`)}</title></circle>`).join("")
    return path + marks
  }).join("")
  return open(f, o.title) + lg.svg + yAxis(f, yt, o.yLabel, y) + xAxis + lines + "</svg>"
}

export interface BarChartOptions {
  readonly title: string
  /** One group per category (e.g. a length bucket); `values[i]` belongs to `seriesNames[i]`. */
  readonly groups: ReadonlyArray<{ readonly label: string; readonly values: ReadonlyArray<number | null> }>
  readonly seriesNames: ReadonlyArray<string>
  readonly yLabel: string
  readonly width?: number
  readonly height?: number
}

/** A grouped bar chart (e.g. each evaluated system per bucket); null values are left out. */
export const barChart = (o: BarChartOptions): string => {
  const width = o.width ?? 520
  const height = o.height ?? 300
  const lg = legend(o.seriesNames, width)
  const f = frameOf(width, height, lg.rows)
  const values = o.groups.flatMap((g) => g.values.filter((v): v is number => v !== null && Number.isFinite(v)))
  if (values.length === 0) {
    return open(f, o.title) + `<text x="${c(width / 2)}" y="${c(height / 2)}" text-anchor="middle" font-size="12" fill="#777">no data</text></svg>`
  }
  const yt = niceTicks(Math.min(0, ...values), Math.max(0, ...values), 5)
  const y = (v: number) => f.bottom - ((v - yt.lo) / (yt.hi - yt.lo)) * (f.bottom - f.top)
  const groupW = (f.right - f.left) / Math.max(1, o.groups.length)
  const n = Math.max(1, o.seriesNames.length)
  const barW = Math.min(40, (groupW * 0.8) / n)
  const bars = o.groups.map((g, gi) => {
    const x0 = f.left + gi * groupW + (groupW - barW * n) / 2
    const rects = g.values.map((v, si) => {
      if (v === null || !Number.isFinite(v)) return ""
      const top = Math.min(y(v), y(0))
      const h = Math.abs(y(v) - y(0))
      return `<rect x="${c(x0 + si * barW)}" y="${c(top)}" width="${c(barW - 2)}" height="${c(Math.max(h, 0.5))}" fill="${colour(si)}"><title>${escapeXml(`${o.seriesNames[si] ?? ""} ${g.label}: ${v}`)}</title></rect>`
    }).join("")
    return rects + `<text x="${c(f.left + gi * groupW + groupW / 2)}" y="${f.bottom + 16}" text-anchor="middle" font-size="10">${escapeXml(g.label)}</text>`
  }).join("")
  const axis = `<line x1="${f.left}" x2="${f.right}" y1="${c(y(0))}" y2="${c(y(0))}" stroke="#333"/>`
  return open(f, o.title) + lg.svg + yAxis(f, yt, o.yLabel, y) + axis + bars + "</svg>"
}
