/**
 * How the fake judge servers read the prompts polaris sends (Rubric.judgePrompt / pairPrompt),
 * written from what the prompts' own headers say, not from the code that builds them.
 */

/** The user message of a generateContent or chat completions request. */
export const userOf = (req: any): string => req.contents?.[0]?.parts?.[0]?.text ?? req.messages?.at(-1)?.content ?? ""

/** The story of a verdict prompt: everything between <story> and the last </story> after the prompt. */
export const storyOf = (user: string): string => {
  const after = user.slice(user.lastIndexOf("</prompt>"))
  return after.slice(after.indexOf("<story>") + "<story>".length, after.lastIndexOf("</story>")).trim()
}

/**
 * The two stories of a pairwise prompt, read as its header says: each between its own tags
 * (`<story_1_NONCE>` … `</story_1_NONCE>`), which occur nowhere else (the newline that puts each
 * tag on its own line is not part of the story). Undefined for a verdict prompt.
 */
export const pairOf = (user: string): readonly [string, string] | undefined => {
  const read = (k: 1 | 2) => {
    const tag = new RegExp(`<(story_${k}_[0-9a-f]{6})>`).exec(user)?.[1]
    if (tag === undefined) return undefined
    const open = `\n<${tag}>\n`
    return user.slice(user.indexOf(open) + open.length, user.indexOf(`\n</${tag}>`))
  }
  const [one, two] = [read(1), read(2)]
  return one === undefined || two === undefined ? undefined : [one, two]
}
