/**
 * Reading a tar archive in memory (what Python's `tarfile.open(path, "r")` reads: POSIX ustar,
 * pax extended headers, GNU long names, optionally gzip-compressed). Regular files only: a
 * symlink, a hard link, an absolute path or a `..` component fails the whole archive, as the
 * Tinker CLI's `_safe_extract_tar` does (thinking-machines-lab/tinker
 * src/tinker/cli/commands/checkpoint.py@d595dc2).
 *
 * Header layout (POSIX.1-1988 ustar, 512-byte blocks): name[0,100) mode uid gid size[124,136)
 * (octal, or base-256 when the first byte has its high bit set) mtime chksum[148,156)
 * typeflag[156] linkname[157,257) magic[257,263) … prefix[345,500); data padded to 512; the
 * archive ends with two zero blocks. Pax (`x`) records are `"<len> <key>=<value>\n"`.
 */
import { gunzipSync } from "node:zlib"

const BLOCK = 512

/** Why an archive could not be read. */
export class TarError extends Error {
  override readonly name = "TarError"
}

const text = (bytes: Uint8Array, from: number, length: number): string => {
  const slice = bytes.subarray(from, from + length)
  const end = slice.indexOf(0)
  return new TextDecoder().decode(end < 0 ? slice : slice.subarray(0, end))
}

/** A numeric header field: NUL/space-terminated octal, or GNU base-256. */
const number = (bytes: Uint8Array, from: number, length: number): number => {
  if ((bytes[from]! & 0x80) !== 0) {
    let n = bytes[from]! & 0x7f
    for (let i = 1; i < length; i++) n = n * 256 + bytes[from + i]!
    return n
  }
  const s = text(bytes, from, length).trim()
  if (s === "") return 0
  if (!/^[0-7]+$/.test(s)) throw new TarError(`tar: bad octal field ${JSON.stringify(s)}`)
  return parseInt(s, 8)
}

const checksumOk = (header: Uint8Array): boolean => {
  let want: number
  try {
    want = number(header, 148, 8)
  } catch {
    return false
  }
  let sum = 0
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i]!
  return sum === want
}

/** `"<len> <key>=<value>\n"` records. */
const paxRecords = (data: Uint8Array): Record<string, string> => {
  const out: Record<string, string> = {}
  let at = 0
  while (at < data.length) {
    const space = data.indexOf(0x20, at)
    if (space < 0) break
    const length = Number(new TextDecoder().decode(data.subarray(at, space)))
    if (!Number.isInteger(length) || length <= 0) throw new TarError("tar: bad pax record length")
    const record = new TextDecoder().decode(data.subarray(space + 1, at + length - 1))
    const eq = record.indexOf("=")
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1)
    at += length
  }
  return out
}

/** A member name as a safe relative path (`./a/b` -> `a/b`), or a TarError. */
const safeName = (name: string): string => {
  const parts = name.split("/").filter((p) => p !== "" && p !== ".")
  if (name.startsWith("/") || parts.includes("..")) throw new TarError(`tar: unsafe path ${JSON.stringify(name)} in the archive`)
  return parts.join("/")
}

/**
 * The regular files of a tar (or tar.gz) archive, by relative path. Directories are skipped.
 *
 * @example
 * const files = untar(bytes)
 * files.get("adapter_config.json") // Uint8Array
 */
export const untar = (input: Uint8Array): Map<string, Uint8Array> => {
  const bytes = input[0] === 0x1f && input[1] === 0x8b ? new Uint8Array(gunzipSync(input)) : input
  const files = new Map<string, Uint8Array>()
  let at = 0
  let longName: string | undefined
  let pax: Record<string, string> = {}
  while (at + BLOCK <= bytes.length) {
    const header = bytes.subarray(at, at + BLOCK)
    if (header.every((b) => b === 0)) break // end of archive
    if (!checksumOk(header)) throw new TarError(`tar: bad header checksum at byte ${at} (not a tar archive, or truncated)`)
    const size = pax.size !== undefined ? Number(pax.size) : number(header, 124, 12)
    const type = String.fromCharCode(header[156]!)
    const dataStart = at + BLOCK
    const dataEnd = dataStart + size
    if (dataEnd > bytes.length) throw new TarError(`tar: member at byte ${at} runs past the end of the ${bytes.length}-byte archive`)
    const data = bytes.subarray(dataStart, dataEnd)
    at = dataStart + Math.ceil(size / BLOCK) * BLOCK
    if (type === "x") {
      pax = paxRecords(data)
      continue
    }
    if (type === "g") continue // global pax header: nothing we use
    if (type === "L") {
      longName = text(data, 0, data.length)
      continue
    }
    const magic = text(header, 257, 6)
    const prefix = magic.startsWith("ustar") ? text(header, 345, 155) : ""
    const raw = pax.path ?? longName ?? (prefix === "" ? text(header, 0, 100) : `${prefix}/${text(header, 0, 100)}`)
    pax = {}
    longName = undefined
    const name = safeName(raw)
    if (type === "1" || type === "2") throw new TarError(`tar: link ${JSON.stringify(raw)} in the archive (links are refused)`)
    if (type === "5") continue
    if (type !== "0" && type !== "\0" && type !== "7") continue // devices, fifos: not files
    if (name !== "") files.set(name, data.slice())
  }
  return files
}
