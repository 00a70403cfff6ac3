/**
 * The recipe's JSON Schema for editors: Effect's draft 2020-12 document, with what it cannot
 * say added back. Secrets are strings of the form `${ENV_VAR}`, and string patterns Effect left
 * out (it exports only RegExps with the `u` flag) are restored.
 */
import { Schema, SchemaAST } from "effect"
import { descriptionOf } from "./issues.ts"
import { REFERENCE } from "./secrets.ts"

type Json = { [key: string]: unknown }

const isJson = (u: unknown): u is Json => typeof u === "object" && u !== null && !Array.isArray(u)

type Loose = { readonly [key: string]: unknown } | undefined

const representation = (annotations: unknown) => (((annotations as Loose)?.representation) as Loose)

const isSecret = (ast: SchemaAST.AST) => SchemaAST.isDeclaration(ast) && representation(ast.annotations)?.id === "effect/schema/Redacted"

const patternOf = (ast: SchemaAST.AST): string | undefined => {
  for (const check of ast.checks ?? []) {
    const r = representation(check.annotations)
    if (r?.id === "effect/schema/isPattern") return String((r.payload as Loose)?.source)
  }
  return undefined
}

/** `json` (generated from `ast`) with secrets and patterns filled in, recursively. */
const patch = (ast: SchemaAST.AST, json: Json): Json => {
  if (isSecret(ast)) {
    const what = descriptionOf(ast)
    return { type: "string", pattern: REFERENCE.source, description: `${what === undefined ? "" : `${what}: `}a secret, written as \${ENV_VAR}` }
  }
  const out: Json = { ...json }
  if (SchemaAST.isObjects(ast)) {
    if (isJson(json.properties)) {
      out.properties = Object.fromEntries(Object.entries(json.properties).map(([key, value]) => {
        const field = ast.propertySignatures.find((p) => p.name === key)
        return [key, field !== undefined && isJson(value) ? patch(field.type, value) : value]
      }))
    }
    const index = ast.indexSignatures[0]
    if (index !== undefined && isJson(json.additionalProperties)) out.additionalProperties = patch(index.type, json.additionalProperties)
  }
  const item = SchemaAST.isArrays(ast) ? ast.rest[0] : undefined
  if (item !== undefined && isJson(json.items)) out.items = patch(item, json.items)
  const pattern = SchemaAST.isString(ast) && out.pattern === undefined ? patternOf(ast) : undefined
  if (pattern !== undefined) out.pattern = pattern
  return out
}

/** The JSON Schema document of `schema`, titled, for editors. */
export const editorSchema = (schema: Schema.Top, title: string, description: string): Json => {
  const document = Schema.toJsonSchemaDocument(schema, { onExcessProperty: "error" })
  const definitions = document.definitions as Json
  return {
    $schema: "https://json-schema.org/draft/2020-12/schema",
    title,
    description,
    ...patch(schema.ast, document.schema as Json),
    ...(Object.keys(definitions).length > 0 ? { $defs: definitions } : {})
  }
}
