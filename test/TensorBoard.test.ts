/**
 * The TensorBoard event-file writer: CRC-32C against published vectors, record framing and
 * Event bytes against what TensorBoard's own Python code produces (pinned below), and files
 * read back by TensorBoard's readers (skipped, saying why, where tensorboard is not installed).
 *
 * Pinned bytes come from tensorboard 2.21.0:
 *   RecordWriter.write(b"hello") on a BytesIO;
 *   event_pb2.Event(wall_time=1.5, step=3, summary=Summary(value=[
 *     Value(tag="groups/reward_policy_mean", simple_value=0.25), Value(tag="x", simple_value=-2.0)])).SerializeToString();
 *   event_pb2.Event(wall_time=1700000000.25, file_version="brain.Event:2"); ... step=-1 and step=300 with tag "t", 1.0.
 */
import { readdirSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { TensorBoard } from "polaris"
import { tempDir } from "./support/store.ts"
import { readTensorBoard, tensorboardMissing } from "./support/tensorboard.ts"

const hex = (bytes: Uint8Array) => Buffer.from(bytes).toString("hex")
const ascii = (s: string) => new TextEncoder().encode(s)

describe("CRC-32C and TFRecord framing", () => {
  it("crc32c matches the standard check value and the RFC 3720 (iSCSI) vectors", () => {
    expect(TensorBoard.crc32c(ascii("123456789"))).toBe(0xe3069283)
    expect(TensorBoard.crc32c(new Uint8Array(0))).toBe(0)
    expect(TensorBoard.crc32c(new Uint8Array(32))).toBe(0x8a9136aa) // 32 zero bytes
    expect(TensorBoard.crc32c(new Uint8Array(32).fill(0xff))).toBe(0x62a8ab43)
    expect(TensorBoard.crc32c(Uint8Array.from({ length: 32 }, (_, i) => i))).toBe(0x46dd794e)
  })

  it("masks as TensorBoard's masked_crc32c does", () => {
    expect(TensorBoard.maskedCrc32c(ascii("123456789"))).toBe(0xc78ab0e5)
  })

  it("frames a record as uint64 length, masked CRC of the length, data, masked CRC of the data", () => {
    expect(hex(TensorBoard.frameRecord(ascii("hello")))).toBe("0500000000000000eab2043e68656c6c6fbb1f1c19")
  })
})

describe("Event protobuf", () => {
  it("encodes scalars, the file version, negative and multi-byte steps byte for byte as TensorBoard's event_pb2", () => {
    expect(hex(TensorBoard.encodeEvent({ wallTime: 1.5, step: 3, values: [{ tag: "groups/reward_policy_mean", value: 0.25 }, { tag: "x", value: -2 }] })))
      .toBe("09000000000000f83f10032a2c0a200a1967726f7570732f7265776172645f706f6c6963795f6d65616e150000803e0a080a017815000000c0")
    expect(hex(TensorBoard.encodeEvent({ wallTime: 1700000000.25, fileVersion: TensorBoard.FILE_VERSION })))
      .toBe("0900001040fc54d9411a0d627261696e2e4576656e743a32")
    expect(hex(TensorBoard.encodeEvent({ wallTime: 2, step: -1, values: [{ tag: "t", value: 1 }] })))
      .toBe("09000000000000004010ffffffffffffffffff012a0a0a080a0174150000803f")
    expect(hex(TensorBoard.encodeEvent({ wallTime: 2, step: 300, values: [{ tag: "t", value: 1 }] })))
      .toBe("09000000000000004010ac022a0a0a080a0174150000803f")
  })

  it("names files events.out.tfevents.<10-digit seconds>.<host>.<pid>.polaris", () => {
    expect(TensorBoard.fileName(1_700_000_000_999, "box", 42)).toBe("events.out.tfevents.1700000000.box.42.polaris")
    expect(TensorBoard.fileName(5_000, "box", 1)).toBe("events.out.tfevents.0000000005.box.1.polaris")
  })
})

const missing = tensorboardMissing()
if (missing !== undefined) console.warn(`TensorBoard read-back tests skipped: ${missing}`)

describe.skipIf(missing !== undefined)(`event files read back by TensorBoard${missing !== undefined ? ` (skipped: ${missing})` : ""}`, () => {
  it.effect("EventAccumulator and the strict record reader read every scalar at its step; a second file in the run folder adds to it", () =>
    Effect.gen(function*() {
      const logdir = tempDir("polaris-tb-")
      const run = join(logdir, "run-a")
      const first = yield* TensorBoard.open(run, 1_700_000_000_000)
      yield* first.append([
        { step: 0, wallTime: 1_700_000_001, values: [{ tag: "groups/reward_policy_mean", value: 0.1 }, { tag: "update/loss", value: 2.5 }] },
        { step: 1, wallTime: 1_700_000_002, values: [{ tag: "groups/reward_policy_mean", value: 0.2 }] },
        { step: 2, wallTime: 1_700_000_003, values: [] } // nothing to write: no record
      ])
      yield* first.append([{ step: 123_456_789_012, wallTime: 1_700_000_004, values: [{ tag: "words_mean@300/ünïcode", value: -1e-7 }] }])
      // A resumed process: a new file, later in name order, continuing the plot.
      const second = yield* TensorBoard.open(run, 1_700_000_100_000)
      yield* second.append([{ step: 2, wallTime: 1_700_000_101, values: [{ tag: "groups/reward_policy_mean", value: 0.3 }] }])
      expect(readdirSync(run).sort()).toEqual([TensorBoard.fileName(1_700_000_000_000), TensorBoard.fileName(1_700_000_100_000)])

      const read = readTensorBoard(logdir)
      expect(read.files.map((f) => [f.run, f.records, f.file_version, f.steps])).toEqual([
        ["run-a", 4, "brain.Event:2", [0, 1, 123_456_789_012]],
        ["run-a", 2, "brain.Event:2", [2]]
      ])
      const f32 = Math.fround
      expect(read.runs["run-a"]).toEqual({
        "groups/reward_policy_mean": [[0, f32(0.1)], [1, f32(0.2)], [2, f32(0.3)]],
        "update/loss": [[0, 2.5]],
        "words_mean@300/ünïcode": [[123_456_789_012, f32(-1e-7)]]
      })
    }))
})
