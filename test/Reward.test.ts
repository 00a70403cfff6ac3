/** The reward: LongWriter's length score pinned by hand, r = Q·L, thinking stripped, unscorable never 0. */
import { describe, expect, it } from "vitest"
import { lengthFactor, lengthScore, reward, storyWords, stripThinking } from "../src/grpo/Reward.ts"

describe("reward", () => {
  it("LongWriter's S_l: a third too long loses a third, half too short loses half", () => {
    expect(lengthScore(1000, 1000)).toBe(100)
    expect(lengthScore(1000, 1300)).toBeCloseTo(90, 12) // 1 - 0.3/3
    expect(lengthScore(1000, 4000)).toBe(0) // 1 - 3/3
    expect(lengthScore(1000, 800)).toBeCloseTo(87.5, 12) // 1 - (1.25 - 1)/2
    expect(lengthScore(1000, 500)).toBeCloseTo(50, 12) // 1 - (2 - 1)/2
    expect(lengthScore(1000, 300)).toBe(0) // x/y - 1 = 2.33 > 2
    expect(lengthScore(1000, 0)).toBe(0)
    expect(lengthFactor("none", 1000, 10)).toBe(1)
  })

  it("r = Q_norm · L, and no reward (not 0) without a quality", () => {
    expect(reward({ quality: 0.6, requested: 1000, words: 1300 })).toBeCloseTo(0.54, 12)
    expect(reward({ quality: 0.6, requested: 1000, words: 1300, lengthFactor: "none" })).toBeCloseTo(0.6, 12)
    expect(reward({ quality: null, requested: 1000, words: 1000 })).toBeNull()
    expect(reward({ quality: Number.NaN, requested: 1000, words: 1000 })).toBeNull()
  })

  it("strips thinking before counting words", () => {
    expect(stripThinking("<think>plan the plot first</think>\nThe sea was calm.")).toBe("The sea was calm.")
    expect(stripThinking("<think>never finished thinking")).toBe("")
    expect(storyWords("<think>one two three four</think> Five six.")).toBe(2)
  })
})
