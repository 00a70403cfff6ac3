/** The side channel of in-process tests: how many times each stage body (or item) ran. */
export const makeCounter = () => {
  const counts = new Map<string, number>()
  return {
    /** Records one execution of `name`. */
    count: (name: string) => void counts.set(name, (counts.get(name) ?? 0) + 1),
    /** Executions so far, by name, sorted. */
    ran: () => Object.fromEntries([...counts].sort()),
    reset: () => counts.clear()
  }
}
