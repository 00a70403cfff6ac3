/**
 * TensorBoard event files, written in TypeScript: scalars that `tensorboard --logdir DIR` plots,
 * with no Python and no TensorFlow. An event file is a sequence of TFRecords, each one
 * serialized `tensorboard.Event` protobuf; the first event names the file version, the rest
 * carry `Summary` values (tag, float `simple_value`) at a step.
 *
 * Upstream definitions followed (github.com/tensorflow/tensorboard):
 * - `tensorboard/compat/proto/event.proto@00342393c3241773100aef37251939d901854415` (Event)
 * - `tensorboard/compat/proto/summary.proto@00bd827c4d958710a8c67f5e240c24c8cf1498f4` (Summary, Summary.Value)
 * - `tensorboard/summary/writer/record_writer.py@149535a53c4fe55ee3e51b1369b4c6f05e6eaf9f` (record framing)
 * - `tensorboard/summary/writer/event_file_writer.py@0c732fcc527825b520cf8f4112b2536c4082b834` (file name, first event)
 * - `tensorboard/compat/tensorflow_stub/pywrap_tensorflow.py@ff9ca80c12f2468b1b45ea65833be78605704318` (masked CRC32C)
 *
 * @example
 * const file = yield* TensorBoard.open("runs/tb/my-run")
 * yield* file.append([{ step: 3, wallTime: Date.now() / 1000, values: [{ tag: "groups/reward_policy_mean", value: 0.42 }] }])
 * // then: tensorboard --logdir runs/tb
 */
import * as fs from "node:fs"
import { hostname } from "node:os"
import { join } from "node:path"
import { Data, Effect } from "effect"

/** Writing an event file failed: which file, what was being done, and the cause. */
export class TensorBoardError extends Data.TaggedError("TensorBoardError")<{
  readonly path: string
  readonly reason: "create" | "append"
  readonly cause: unknown
}> {
  override get message() {
    return `tensorboard: cannot ${this.reason} ${this.path}: ${this.cause instanceof Error ? this.cause.message : String(this.cause)}`
  }
}

/** One scalar: a tag (slash-separated, TensorBoard groups charts by its first segment) and its value. */
export interface Scalar {
  readonly tag: string
  readonly value: number
}

/** Scalars recorded together: one Event, at one step and one time (seconds since the epoch). */
export interface ScalarEvent {
  readonly step: number
  readonly wallTime: number
  readonly values: ReadonlyArray<Scalar>
}

// ---------------------------------------------------------------------------------------------
// CRC32C (Castagnoli), as TFRecord checksums use it

/** Reflected CRC-32C polynomial 0x1EDC6F41, bit-reversed. */
const POLY = 0x82f63b78

const TABLE = (() => {
  const table = new Uint32Array(256)
  for (let i = 0; i < 256; i++) {
    let c = i
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1
    table[i] = c >>> 0
  }
  return table
})()

/** CRC-32C of `bytes` (crc32c("123456789") = 0xe3069283). */
export const crc32c = (bytes: Uint8Array): number => {
  let crc = 0xffffffff
  for (let i = 0; i < bytes.length; i++) crc = TABLE[(crc ^ bytes[i]!) & 0xff]! ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

/**
 * The masked CRC a TFRecord stores: rotate right by 15, add a constant, so a CRC of data that
 * itself holds CRCs is not trivially zero (pywrap_tensorflow.py `masked_crc32c`:
 * `((x >> 15) | (x << 17)) + 0xA282EAD8`, modulo 2^32).
 */
export const maskedCrc32c = (bytes: Uint8Array): number => {
  const crc = crc32c(bytes)
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0
}

/**
 * One TFRecord around `data` (record_writer.py `write`, little-endian):
 *
 *     uint64  length
 *     uint32  masked crc32c of the 8 length bytes
 *     byte    data[length]
 *     uint32  masked crc32c of data
 */
export const frameRecord = (data: Uint8Array): Uint8Array => {
  const out = new Uint8Array(8 + 4 + data.length + 4)
  const view = new DataView(out.buffer)
  view.setBigUint64(0, BigInt(data.length), true)
  view.setUint32(8, maskedCrc32c(out.subarray(0, 8)), true)
  out.set(data, 12)
  view.setUint32(12 + data.length, maskedCrc32c(data), true)
  return out
}

// ---------------------------------------------------------------------------------------------
// Protobuf, by hand: only the fields written here (the wire format: varint keys
// `field << 3 | wire type`; 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32).

/** Bytes of a protobuf message, appended field by field. */
class Message {
  private readonly parts: Array<Uint8Array> = []

  private varint(value: bigint): this {
    const bytes: Array<number> = []
    // int64 on the wire: a negative value is its 64-bit two's complement (10 bytes).
    let v = BigInt.asUintN(64, value)
    do {
      const low = Number(v & 0x7fn)
      v >>= 7n
      bytes.push(v > 0n ? low | 0x80 : low)
    } while (v > 0n)
    this.parts.push(Uint8Array.from(bytes))
    return this
  }

  private key(field: number, wire: 0 | 1 | 2 | 5): this {
    return this.varint(BigInt((field << 3) | wire))
  }

  int64(field: number, value: number): this {
    return this.key(field, 0).varint(BigInt(value))
  }

  double(field: number, value: number): this {
    const b = new Uint8Array(8)
    new DataView(b.buffer).setFloat64(0, value, true)
    this.key(field, 1).parts.push(b)
    return this
  }

  float(field: number, value: number): this {
    const b = new Uint8Array(4)
    new DataView(b.buffer).setFloat32(0, value, true)
    this.key(field, 5).parts.push(b)
    return this
  }

  bytes(field: number, value: Uint8Array): this {
    this.key(field, 2).varint(BigInt(value.length)).parts.push(value)
    return this
  }

  string(field: number, value: string): this {
    return this.bytes(field, new TextEncoder().encode(value))
  }

  message(field: number, value: Message): this {
    return this.bytes(field, value.finish())
  }

  finish(): Uint8Array {
    return Buffer.concat(this.parts)
  }
}

/** The version every event file starts with (event.proto: `Current version is "brain.Event:2"`). */
export const FILE_VERSION = "brain.Event:2"

/**
 * A serialized `tensorboard.Event` (event.proto):
 *
 *     double  wall_time    = 1;
 *     int64   step         = 2;
 *     oneof what { string file_version = 3; Summary summary = 5; ... }
 *
 * with `Summary { repeated Value value = 1; }` and
 * `Value { string tag = 1; oneof value { float simple_value = 2; ... } }` (summary.proto).
 * A step of 0 is left out, as proto3 serializers do.
 */
export const encodeEvent = (event: { readonly wallTime: number; readonly step?: number; readonly fileVersion?: string; readonly values?: ReadonlyArray<Scalar> }): Uint8Array => {
  const m = new Message().double(1, event.wallTime)
  if (event.step !== undefined && event.step !== 0) m.int64(2, event.step)
  if (event.fileVersion !== undefined) m.string(3, event.fileVersion)
  else {
    const summary = new Message()
    for (const v of event.values ?? []) summary.message(1, new Message().string(1, v.tag).float(2, v.value))
    m.message(5, summary)
  }
  return m.finish()
}

/** The framed records of `events`, ready to append to an event file. */
export const encodeScalarEvents = (events: ReadonlyArray<ScalarEvent>): Uint8Array =>
  Buffer.concat(events.filter((e) => e.values.length > 0).map((e) => frameRecord(encodeEvent(e))))

/**
 * An event file's name: `events.out.tfevents.<seconds, 10 digits>.<host>.<pid>.polaris`.
 * TensorBoard reads every file whose name holds `tfevents`, in name order, so the seconds first
 * keep a resumed run's files in time order; the pid keeps two processes started in one second apart.
 */
export const fileName = (now = Date.now(), host = hostname(), pid = process.pid): string =>
  `events.out.tfevents.${String(Math.floor(now / 1000)).padStart(10, "0")}.${host}.${pid}.polaris`

/** An open event file: append scalar events to it. */
export interface EventFile {
  readonly path: string
  readonly append: (events: ReadonlyArray<ScalarEvent>) => Effect.Effect<void, TensorBoardError>
}

/**
 * Creates a new event file in `dir` (made if missing), holding its file-version event. Each
 * `append` writes whole records at the end of the file and closes it again, so TensorBoard
 * sees them at once, and a killed process leaves at most its last record torn (the reader
 * stops there; the next process writes a file of its own).
 */
export const open = (dir: string, now = Date.now()): Effect.Effect<EventFile, TensorBoardError> =>
  Effect.gen(function*() {
    const path = join(dir, fileName(now))
    yield* Effect.try({
      try: () => {
        fs.mkdirSync(dir, { recursive: true })
        fs.writeFileSync(path, frameRecord(encodeEvent({ wallTime: now / 1000, fileVersion: FILE_VERSION })), { flag: "wx" })
      },
      catch: (cause) => new TensorBoardError({ path, reason: "create", cause })
    })
    return {
      path,
      append: (events) =>
        Effect.try({
          try: () => {
            const bytes = encodeScalarEvents(events)
            if (bytes.length > 0) fs.appendFileSync(path, bytes)
          },
          catch: (cause) => new TensorBoardError({ path, reason: "append", cause })
        })
    }
  })
