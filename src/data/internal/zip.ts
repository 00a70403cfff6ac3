/**
 * A minimal zip reader (enough for EPUB): the central directory is read from the end of the
 * archive, entries are stored (method 0) or deflated (method 8, inflated with node:zlib's
 * inflateRaw), and every entry's CRC-32 is checked. Zip64, encryption and multi-disk archives
 * are refused with a reason. Layout: PKWARE APPNOTE.TXT §4.3 (local header 4.3.7, central
 * directory header 4.3.12, end of central directory record 4.3.16).
 */
import { inflateRawSync } from "node:zlib"

/** One file of an archive, not yet decompressed. */
export interface ZipEntry {
  readonly name: string
  /** 0 stored, 8 deflated. */
  readonly method: number
  readonly crc32: number
  readonly compressedSize: number
  readonly size: number
  /** Offset of the entry's local header. */
  readonly localOffset: number
}

/** A malformed or unsupported archive; `reason` says what. */
export class ZipFormatError extends Error {
  constructor(readonly reason: string) {
    super(reason)
  }
}

const EOCD = 0x06054b50
const CENTRAL = 0x02014b50
const LOCAL = 0x04034b50

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

/** CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), as zip stores it. */
export const crc32 = (bytes: Uint8Array): number => {
  let c = 0xffffffff
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

const view = (bytes: Uint8Array) => new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/** The entries listed in the archive's central directory, in directory order. */
export const listEntries = (bytes: Uint8Array): Array<ZipEntry> => {
  const dv = view(bytes)
  // The end record is 22 bytes plus a comment of at most 65,535 bytes.
  let eocd = -1
  for (let i = bytes.length - 22; i >= Math.max(0, bytes.length - 22 - 0xffff); i--) {
    if (dv.getUint32(i, true) === EOCD) {
      eocd = i
      break
    }
  }
  if (eocd < 0) throw new ZipFormatError("not a zip archive (no end of central directory record)")
  const count = dv.getUint16(eocd + 10, true)
  const dirSize = dv.getUint32(eocd + 12, true)
  const dirOffset = dv.getUint32(eocd + 16, true)
  if (count === 0xffff || dirOffset === 0xffffffff) throw new ZipFormatError("zip64 archives are not supported")
  if (dirOffset + dirSize > eocd) throw new ZipFormatError("central directory runs past its end record")
  const decoder = new TextDecoder()
  const entries: Array<ZipEntry> = []
  let p = dirOffset
  for (let k = 0; k < count; k++) {
    if (p + 46 > bytes.length || dv.getUint32(p, true) !== CENTRAL) throw new ZipFormatError(`bad central directory header #${k + 1}`)
    const flags = dv.getUint16(p + 8, true)
    if (flags & 1) throw new ZipFormatError("encrypted entries are not supported")
    const nameLength = dv.getUint16(p + 28, true)
    const extraLength = dv.getUint16(p + 30, true)
    const commentLength = dv.getUint16(p + 32, true)
    entries.push({
      name: decoder.decode(bytes.subarray(p + 46, p + 46 + nameLength)),
      method: dv.getUint16(p + 10, true),
      crc32: dv.getUint32(p + 16, true),
      compressedSize: dv.getUint32(p + 20, true),
      size: dv.getUint32(p + 24, true),
      localOffset: dv.getUint32(p + 42, true)
    })
    p += 46 + nameLength + extraLength + commentLength
  }
  return entries
}

/** The decompressed bytes of an entry; its CRC-32 and size are checked. */
export const readEntry = (bytes: Uint8Array, entry: ZipEntry): Uint8Array => {
  const dv = view(bytes)
  const at = entry.localOffset
  if (at + 30 > bytes.length || dv.getUint32(at, true) !== LOCAL) throw new ZipFormatError(`${entry.name}: bad local header`)
  const start = at + 30 + dv.getUint16(at + 26, true) + dv.getUint16(at + 28, true)
  const end = start + entry.compressedSize
  if (end > bytes.length) throw new ZipFormatError(`${entry.name}: data runs past the end of the archive`)
  const raw = bytes.subarray(start, end)
  let data: Uint8Array
  if (entry.method === 0) data = raw
  else if (entry.method === 8) {
    try {
      data = new Uint8Array(inflateRawSync(raw))
    } catch (e) {
      throw new ZipFormatError(`${entry.name}: bad deflate data (${e instanceof Error ? e.message : String(e)})`)
    }
  } else throw new ZipFormatError(`${entry.name}: compression method ${entry.method} is not supported (only stored and deflate)`)
  if (data.length !== entry.size) throw new ZipFormatError(`${entry.name}: size ${data.length}, directory says ${entry.size}`)
  if (crc32(data) !== entry.crc32) throw new ZipFormatError(`${entry.name}: CRC-32 mismatch`)
  return data
}

/** All file entries of an archive by name, decompressed lazily on `get`. */
export const openZip = (bytes: Uint8Array) => {
  const entries = new Map(listEntries(bytes).map((e) => [e.name, e] as const))
  return {
    names: (): Array<string> => [...entries.keys()],
    has: (name: string): boolean => entries.has(name),
    get: (name: string): Uint8Array | undefined => {
      const e = entries.get(name)
      return e === undefined ? undefined : readEntry(bytes, e)
    }
  }
}
