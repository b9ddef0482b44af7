/**
 * The record shape: what each vendor event becomes on its way to the output. The vendor event
 * stays whole in `message` (one line of compact JSON, as it came); the pipeline adds where it
 * came from. Records are pinned byte for byte by test/pipeline/record.test.ts.
 */
import type { OutputRecord, Sink } from '../output/sink.ts';
import type { InputType, SourceEvent } from '../sources/source.ts';
import { clampEventTime } from '../util/time.ts';

/** Where a batch's events came from: the fields every one of its records carries. */
export interface RecordOrigin {
  /** The service's tag (record field `devo_tag`; also the forward tag). */
  tag: string;
  source: InputType;
  service: string;
  inputId: string;
  pullingId: number;
}

/**
 * One event as a record: `message`, `devo_tag`, `source`, `service`, `input_id`, `pulling_id`, in
 * that order, and `time_clamped: true` when the event's time was out of range and replaced
 * (util/time.ts clampEventTime).
 */
export function buildRecord(event: SourceEvent, origin: RecordOrigin, now: number): OutputRecord {
  const { time, clamped } = clampEventTime(event.time, now);
  const record: Record<string, unknown> = {
    message: event.message,
    devo_tag: origin.tag,
    source: origin.source,
    service: origin.service,
    input_id: origin.inputId,
    pulling_id: origin.pullingId,
  };
  if (clamped) record.time_clamped = true;
  return { time, record };
}

/** An encoded record, or why it cannot be sent (it then goes to the dead-letter file). */
export type EncodedRecord = { ok: true; bytes: Buffer } | { ok: false; reason: string };

/**
 * Encodes a record with the sink's encoder and applies THE record-size check: the one place a
 * record too large for any frame (`Sink.maxRecordBytes`, from output.max_frame_bytes) is caught.
 * A record reaches `Sink.send` only through here, so the outputs' own guards (a frame over the
 * limit in ForwardClient.enqueue, which `check --online` also calls directly; a record over it in
 * the stdout output) never fire on the pipeline's path. An oversized record resent would loop
 * forever, so it is refused here once, with the sizes in the reason, and dead-lettered.
 */
export function encodeWithinFrame(sink: Sink, rec: OutputRecord, maxBytes: number): EncodedRecord {
  let bytes: Buffer;
  try {
    bytes = sink.encode(rec);
  } catch (err) {
    return { ok: false, reason: `cannot be encoded: ${(err as Error).message}` };
  }
  if (bytes.length > maxBytes) {
    return {
      ok: false,
      reason: `record of ${bytes.length} bytes is larger than the largest frame allows (${maxBytes} bytes; output.max_frame_bytes)`,
    };
  }
  return { ok: true, bytes };
}
