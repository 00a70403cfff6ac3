/**
 * Test helpers: a minimal zip writer (stored and deflated entries, no data descriptors) and a
 * tiny EPUB built with it, so ingest tests need no binary fixtures in the repository.
 */
import { deflateRawSync } from "node:zlib"
import { crc32 } from "../../src/data/internal/zip.ts"
import { concatBytes } from "../../src/internal/bytes.ts"

/** One file to put in an archive. */
export interface ZipInput {
  readonly name: string
  readonly data: Uint8Array | string
  /** 0 stored (default), 8 deflated. */
  readonly method?: 0 | 8
}

/** A zip archive (PKWARE APPNOTE §4.3): local headers + data, central directory, end record. */
export const writeZip = (files: ReadonlyArray<ZipInput>): Uint8Array => {
  const enc = new TextEncoder()
  const chunks: Array<Uint8Array> = []
  const central: Array<Uint8Array> = []
  let offset = 0
  for (const f of files) {
    const name = enc.encode(f.name)
    const data = typeof f.data === "string" ? enc.encode(f.data) : f.data
    const method = f.method ?? 0
    const body = method === 8 ? new Uint8Array(deflateRawSync(data)) : data
    const crc = crc32(data)
    const local = new Uint8Array(30 + name.length)
    const lv = new DataView(local.buffer)
    lv.setUint32(0, 0x04034b50, true)
    lv.setUint16(4, 20, true)
    lv.setUint16(8, method, true)
    lv.setUint32(14, crc, true)
    lv.setUint32(18, body.length, true)
    lv.setUint32(22, data.length, true)
    lv.setUint16(26, name.length, true)
    local.set(name, 30)
    const cd = new Uint8Array(46 + name.length)
    const cv = new DataView(cd.buffer)
    cv.setUint32(0, 0x02014b50, true)
    cv.setUint16(4, 20, true)
    cv.setUint16(6, 20, true)
    cv.setUint16(10, method, true)
    cv.setUint32(16, crc, true)
    cv.setUint32(20, body.length, true)
    cv.setUint32(24, data.length, true)
    cv.setUint16(28, name.length, true)
    cv.setUint32(42, offset, true)
    cd.set(name, 46)
    chunks.push(local, body)
    central.push(cd)
    offset += local.length + body.length
  }
  const dirSize = central.reduce((n, c) => n + c.length, 0)
  const end = new Uint8Array(22)
  const ev = new DataView(end.buffer)
  ev.setUint32(0, 0x06054b50, true)
  ev.setUint16(8, files.length, true)
  ev.setUint16(10, files.length, true)
  ev.setUint32(12, dirSize, true)
  ev.setUint32(16, offset, true)
  return concatBytes([...chunks, ...central, end])
}

/** One XHTML chapter of a test EPUB. */
export interface Chapter {
  readonly file: string
  readonly title: string
  readonly paragraphs: ReadonlyArray<string>
  /** Heading element; "title" puts the title only in <title>. */
  readonly heading?: "h1" | "h2" | "title"
  readonly properties?: string
}

const xhtml = (c: Chapter) =>
  `<?xml version="1.0" encoding="utf-8"?>\n<html xmlns="http://www.w3.org/1999/xhtml"><head><title>${c.title}</title></head>\n<body>\n` +
  (c.heading === "title" ? "" : `<${c.heading ?? "h1"} class="chapter">${c.title}</${c.heading ?? "h1"}>\n`) +
  c.paragraphs.map((p) => `<p class="text">${p}</p>`).join("\n") +
  "\n</body></html>\n"

/**
 * A small EPUB 3: mimetype (stored, first, as the spec wants), container.xml, an OPF under
 * OEBPS/ with a manifest and spine in `chapters` order, one XHTML per chapter. `method` is
 * used for every entry but the mimetype.
 */
export const writeEpub = (chapters: ReadonlyArray<Chapter>, method: 0 | 8): Uint8Array => {
  const manifest = chapters
    .map((c, i) => `<item id="c${i}-${c.file.replace(/\W/g, "")}" href="${encodeURI(c.file)}" media-type="application/xhtml+xml"${c.properties ? ` properties="${c.properties}"` : ""}/>`)
    .join("\n    ")
  const spine = chapters.map((c, i) => `<itemref idref="c${i}-${c.file.replace(/\W/g, "")}"/>`).join("\n    ")
  const opf = `<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://www.idpf.org/2007/opf" version="3.0" unique-identifier="uid">
  <metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Test Book</dc:title></metadata>
  <manifest>
    ${manifest}
    <item id="css" href="style.css" media-type="text/css"/>
  </manifest>
  <spine>
    ${spine}
  </spine>
</package>
`
  const container = `<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/></rootfiles>
</container>
`
  return writeZip([
    { name: "mimetype", data: "application/epub+zip", method: 0 },
    { name: "META-INF/container.xml", data: container, method },
    { name: "OEBPS/content.opf", data: opf, method },
    { name: "OEBPS/style.css", data: "p { margin: 0 }", method },
    ...chapters.map((c) => ({ name: `OEBPS/${c.file}`, data: xhtml(c), method }))
  ])
}
