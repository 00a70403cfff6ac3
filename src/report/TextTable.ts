/**
 * Rows aligned in columns for the terminal, two spaces apart: each column as wide as its widest
 * cell, left-aligned unless `right(column)` says otherwise; no trailing spaces.
 *
 * @example
 * textTable(["engine", "USD"], [["judge", "$1.20"]], { indent: "  ", right: (i) => i > 0 })
 * // ["  engine    USD", "  judge   $1.20"]
 */
export const textTable = (
  header: ReadonlyArray<string>,
  rows: ReadonlyArray<ReadonlyArray<string>>,
  options: { readonly indent?: string; readonly right?: (column: number) => boolean } = {}
): Array<string> => {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)))
  const line = (cells: ReadonlyArray<string>) =>
    `${options.indent ?? ""}${cells.map((x, i) => (options.right?.(i) ? x.padStart(widths[i]!) : x.padEnd(widths[i]!))).join("  ")}`.trimEnd()
  return [line(header), ...rows.map(line)]
}
