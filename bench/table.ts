/** Markdown tables whose columns line up in a terminal too. */

/** Column alignment: left or right. */
export type Align = "l" | "r"

/**
 * A markdown table with padded columns. `align` defaults to left for the first column and right
 * for the others (labels, then numbers).
 */
export const markdownTable = (
  headers: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  align: ReadonlyArray<Align> = headers.map((_, i) => (i === 0 ? "l" : "r"))
): string => {
  const widths = headers.map((h, i) => Math.max(3, h.length, ...rows.map((r) => (r[i] ?? "").length)))
  const pad = (cell: string, i: number) => (align[i] === "r" ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!))
  const line = (cells: ReadonlyArray<string>) => `| ${headers.map((_, i) => pad(cells[i] ?? "", i)).join(" | ")} |`
  const rule = `|${widths.map((w, i) => (align[i] === "r" ? `${"-".repeat(w + 1)}:` : `:${"-".repeat(w + 1)}`)).join("|")}|`
  return [line(headers), rule, ...rows.map(line)].join("\n")
}
