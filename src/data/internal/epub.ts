/**
 * EPUB -> sections (title + paragraphs). An EPUB is a zip: META-INF/container.xml names the OPF
 * package file, whose manifest lists the files and whose spine gives the reading order. Each
 * spine XHTML file is one section; its title is its first h1/h2 (else its <title>), its text the
 * <p> paragraphs with tags removed and entities decoded. Parsing is by pattern, not a full XML
 * parser: EPUB XHTML is well-formed, and only these few elements are read.
 */
import { decodeText } from "../Gutenberg.ts"
import { openZip, ZipFormatError } from "./zip.ts"

/** One spine document of an EPUB. */
export interface EpubSection {
  /** Path of the XHTML file inside the archive. */
  readonly href: string
  /** Manifest id of the file. */
  readonly id: string
  /** EPUB 3 manifest properties (`nav`, `cover-image`, ...). */
  readonly properties: string
  /** First h1/h2, else the document <title>, else "". */
  readonly title: string
  /** Paragraph texts, in order. */
  readonly paragraphs: ReadonlyArray<string>
}

const NAMED: Record<string, string> = {
  amp: "&", lt: "<", gt: ">", quot: '"', apos: "'", nbsp: "\u00a0", ndash: "–", mdash: "—", hellip: "…",
  lsquo: "‘", rsquo: "’", ldquo: "“", rdquo: "”", sbquo: "‚", bdquo: "„", laquo: "«", raquo: "»",
  copy: "©", reg: "®", trade: "™", deg: "°", middot: "·", bull: "•", shy: "", zwj: "", zwnj: "",
  thinsp: "\u2009", ensp: "\u2002", emsp: "\u2003", para: "¶", sect: "§", dagger: "†", Dagger: "‡",
  eacute: "é", egrave: "è", ecirc: "ê", euml: "ë", aacute: "á", agrave: "à", acirc: "â", auml: "ä",
  iacute: "í", icirc: "î", iuml: "ï", oacute: "ó", ocirc: "ô", ouml: "ö", uacute: "ú", ucirc: "û",
  uuml: "ü", ccedil: "ç", ntilde: "ñ", aelig: "æ", oelig: "œ", szlig: "ß", Eacute: "É", Agrave: "À"
}

/** `&amp;`, `&#8212;`, `&#x2014;` and the common named entities -> characters (others kept). */
export const decodeEntities = (text: string): string =>
  text.replace(/&(#x[0-9a-f]+|#[0-9]+|[a-z][a-z0-9]*);/gi, (whole, name: string) => {
    if (name.startsWith("#")) {
      const code = name[1] === "x" || name[1] === "X" ? parseInt(name.slice(2), 16) : parseInt(name.slice(1), 10)
      return Number.isFinite(code) && code > 0 && code <= 0x10ffff ? String.fromCodePoint(code) : whole
    }
    return NAMED[name] ?? whole
  })

/** Inner markup -> plain text: tags removed (<br> is a space), entities decoded, spaces collapsed. */
const plain = (markup: string): string =>
  decodeEntities(markup.replace(/<br\s*\/?>/gi, " ").replace(/<[^>]*>/g, "")).replace(/\s+/g, " ").trim()

/** The value of `name="..."` (or single quotes) in a tag's attribute text. */
const attr = (tag: string, name: string): string | undefined => {
  const m = new RegExp(`\\s${name}\\s*=\\s*(?:"([^"]*)"|'([^']*)')`, "i").exec(tag)
  return m === null ? undefined : decodeEntities(m[1] ?? m[2] ?? "")
}

/** `a/b/../c.xhtml` -> `a/c.xhtml`; `#fragments` and URL escapes removed. */
const resolvePath = (base: string, href: string): string => {
  const parts = (base === "" ? [] : base.split("/")).concat(decodeURIComponent(href.split("#")[0] ?? "").split("/"))
  const out: Array<string> = []
  for (const p of parts) {
    if (p === "..") out.pop()
    else if (p !== "." && p !== "") out.push(p)
  }
  return out.join("/")
}

const text = (bytes: Uint8Array | undefined, what: string): string => {
  if (bytes === undefined) throw new ZipFormatError(`missing ${what}`)
  return decodeText(bytes)
}

/** First match of an element's inner markup, as plain text. */
const firstElement = (xhtml: string, tags: string): string | undefined => {
  const m = new RegExp(`<(${tags})\\b[^>]*>([\\s\\S]*?)</\\1\\s*>`, "i").exec(xhtml)
  const t = m === null ? undefined : plain(m[2] ?? "")
  return t === "" ? undefined : t
}

/** Parses one XHTML document into a title and paragraphs. */
export const parseXhtml = (xhtml: string): { readonly title: string; readonly paragraphs: Array<string> } => {
  const body = /<body\b[^>]*>([\s\S]*)<\/body\s*>/i.exec(xhtml)?.[1] ?? xhtml
  const title = firstElement(body, "h1|h2") ?? firstElement(xhtml, "title") ?? ""
  const paragraphs: Array<string> = []
  for (const m of body.matchAll(/<p\b[^>]*>([\s\S]*?)<\/p\s*>/gi)) {
    const p = plain(m[1] ?? "")
    if (p !== "") paragraphs.push(p)
  }
  return { title, paragraphs }
}

/** The spine sections of an EPUB, in reading order. Throws ZipFormatError on a bad archive. */
export const epubSections = (bytes: Uint8Array): Array<EpubSection> => {
  const zip = openZip(bytes)
  const container = text(zip.get("META-INF/container.xml"), "META-INF/container.xml")
  const rootTag = /<rootfile\b[^>]*>/i.exec(container)?.[0]
  const opfPath = rootTag === undefined ? undefined : attr(rootTag, "full-path")
  if (opfPath === undefined) throw new ZipFormatError("META-INF/container.xml names no rootfile")
  const opf = text(zip.get(opfPath), `package file ${opfPath}`)
  const opfDir = opfPath.includes("/") ? opfPath.slice(0, opfPath.lastIndexOf("/")) : ""
  const manifest = new Map<string, { href: string; type: string; properties: string }>()
  for (const m of opf.matchAll(/<item\b[^>]*>/gi)) {
    const id = attr(m[0], "id")
    const href = attr(m[0], "href")
    if (id !== undefined && href !== undefined) {
      manifest.set(id, { href: resolvePath(opfDir, href), type: attr(m[0], "media-type") ?? "", properties: attr(m[0], "properties") ?? "" })
    }
  }
  const sections: Array<EpubSection> = []
  for (const m of opf.matchAll(/<itemref\b[^>]*>/gi)) {
    const id = attr(m[0], "idref") ?? ""
    const item = manifest.get(id)
    if (item === undefined) throw new ZipFormatError(`spine item "${id}" is not in the manifest`)
    if (!/html/i.test(item.type) && !/\.x?html?$/i.test(item.href)) continue
    const doc = parseXhtml(text(zip.get(item.href), item.href))
    sections.push({ href: item.href, id, properties: item.properties, ...doc })
  }
  return sections
}
