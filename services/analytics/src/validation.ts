/**
 * Validation of tracked events, field names as REST clients send them. A valid event becomes
 * an `IncomingEvent`: its deterministic `_id` (the idempotency key) and normalized fields.
 *
 * Bounds: ids 1..256 characters; eventName 1..100; email ..320; name ..256; country and
 * device ..64; referrer ..2048; amount an integer 0..2^53-1 in minor units; currency ISO 4217
 * (checked against the workspace's reporting currency by the caller); timestamp between
 * 2000-01-01 and 5 minutes after the server's clock (clock skew), default now; metadata a flat
 * object of at most 50 keys and 16 KiB of JSON whose values are strings, numbers, booleans or null.
 */
import { createHash } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ConnectError } from "@connectrpc/connect";
import type { TrackClickRequest, TrackEventRequest, TrackLeadRequest, TrackSaleRequest, TrackedEvent } from "@linquid/contracts";
import { newId, Violations } from "@linquid/mesh";
import type { EventType } from "./totals.js";

export const MAX_FUTURE_MS = 5 * 60_000;
export const MIN_TIMESTAMP_MS = Date.UTC(2000, 0, 1);
export const MAX_METADATA_KEYS = 50;
export const MAX_METADATA_BYTES = 16 * 1024;
const currencies = new Set(Intl.supportedValuesOf("currency"));

/** A validated event before its customer is known. */
export interface IncomingEvent {
  _id: string;
  /** Public id: derived from _id, so every replay answers the same one. */
  eventId: string;
  type: EventType;
  at: Date;
  /** True when _id comes from the caller's idempotency key (click id, invoice id, event id). */
  keyed: boolean;
  externalId?: string;
  email?: string;
  name?: string;
  clickId?: string;
  linkId?: string;
  campaignId?: string;
  source?: string;
  country?: string;
  device?: string;
  referrer?: string;
  eventName?: string;
  amount?: number;
  currency?: string;
  invoiceId?: string;
  metadata?: JsonObject;
}

/** "evt_" + 96 bits of SHA-256(_id). */
export function publicEventId(id: string): string {
  return `evt_${createHash("sha256").update(id).digest("hex").slice(0, 24)}`;
}

function str(v: Violations, field: string, value: string | undefined, max: number, required: boolean): string | undefined {
  if (value === undefined || value === "") {
    if (required) v.add(field, "is required");
    return undefined;
  }
  if (value.length > max) v.add(field, `must be at most ${max} characters`);
  else if (value.trim() === "") v.add(field, "must not be blank");
  return value;
}

function timestamp(v: Violations, ts: Timestamp | undefined, now: number): Date {
  if (ts === undefined) return new Date(now);
  const at = timestampDate(ts);
  const ms = at.getTime();
  if (Number.isNaN(ms) || ms < MIN_TIMESTAMP_MS) v.add("timestamp", "must be on or after 2000-01-01T00:00:00Z");
  else if (ms > now + MAX_FUTURE_MS) v.add("timestamp", "must not be more than 5 minutes in the future");
  return at;
}

/** Checks a flat metadata object; returns it when valid. */
export function checkMetadata(v: Violations, metadata: JsonObject | undefined): JsonObject | undefined {
  if (metadata === undefined) return undefined;
  const keys = Object.keys(metadata);
  if (keys.length > MAX_METADATA_KEYS) v.add("metadata", `must have at most ${MAX_METADATA_KEYS} keys`);
  for (const k of keys) {
    const val = metadata[k];
    if (val !== null && typeof val === "object") {
      v.add("metadata", `must be flat: "${k.slice(0, 40)}" holds an object or array`);
      break;
    }
    if (k.startsWith("$") || k.includes(".") || k === "") {
      v.add("metadata", "keys must be non-empty and must not start with $ or contain a dot");
      break;
    }
  }
  if (Buffer.byteLength(JSON.stringify(metadata), "utf8") > MAX_METADATA_BYTES) v.add("metadata", "must be at most 16 KiB of JSON");
  return keys.length === 0 ? undefined : metadata;
}

function finish(v: Violations, ev: Omit<IncomingEvent, "eventId">): IncomingEvent {
  v.throwIfAny();
  const out: IncomingEvent = { ...ev, eventId: publicEventId(ev._id) };
  for (const k of Object.keys(out) as Array<keyof IncomingEvent>) if (out[k] === undefined) delete out[k];
  return out;
}

export function checkClick(ws: string, r: TrackClickRequest, now: number): IncomingEvent {
  const v = new Violations();
  const clickId = str(v, "clickId", r.clickId, 256, true);
  const at = timestamp(v, r.timestamp, now);
  return finish(v, {
    _id: `${ws}:click:${clickId}`,
    type: "click",
    at,
    keyed: true,
    clickId: clickId!,
    linkId: str(v, "linkId", r.linkId, 256, true)!,
    campaignId: str(v, "campaignId", r.campaignId, 256, false)!,
    source: str(v, "source", r.source, 256, false)!,
    country: str(v, "country", r.country, 64, false)!,
    device: str(v, "device", r.device, 64, false)!,
    referrer: str(v, "referrer", r.referrer, 2048, false)!,
  });
}

function keyedId(ws: string, type: EventType, key: string | undefined): { _id: string; keyed: boolean } {
  return key === undefined ? { _id: `${ws}:${type}:${newId("rnd")}`, keyed: false } : { _id: `${ws}:${type}:${key}`, keyed: true };
}

export function checkLead(ws: string, r: TrackLeadRequest, now: number): IncomingEvent {
  const v = new Violations();
  const externalId = str(v, "externalId", r.externalId, 256, true);
  const eventId = str(v, "eventId", r.eventId, 256, false);
  const at = timestamp(v, r.timestamp, now);
  return finish(v, {
    ...keyedId(ws, "lead", eventId),
    type: "lead",
    at,
    externalId: externalId!,
    clickId: str(v, "clickId", r.clickId, 256, false)!,
    email: str(v, "email", r.email, 320, false)!,
    name: str(v, "name", r.name, 256, false)!,
    eventName: str(v, "eventName", r.eventName, 100, false) ?? "lead",
    metadata: checkMetadata(v, r.metadata)!,
  });
}

export function checkSale(ws: string, r: TrackSaleRequest, now: number): IncomingEvent {
  const v = new Violations();
  const externalId = str(v, "externalId", r.externalId, 256, true);
  const invoiceId = str(v, "invoiceId", r.invoiceId, 256, true);
  if (r.amount < 0n) v.add("amount", "must be an integer >= 0 (minor units)");
  else if (r.amount > BigInt(Number.MAX_SAFE_INTEGER)) v.add("amount", `must be at most ${Number.MAX_SAFE_INTEGER}`);
  if (r.currency === "") v.add("currency", "is required");
  else if (!/^[A-Z]{3}$/.test(r.currency) || !currencies.has(r.currency)) v.add("currency", "must be an ISO 4217 code such as USD");
  const at = timestamp(v, r.timestamp, now);
  return finish(v, {
    _id: `${ws}:sale:${invoiceId}`,
    type: "sale",
    at,
    keyed: true,
    externalId: externalId!,
    invoiceId: invoiceId!,
    amount: Number(r.amount),
    currency: r.currency,
    clickId: str(v, "clickId", r.clickId, 256, false)!,
    eventName: str(v, "eventName", r.eventName, 100, false) ?? "purchase",
  });
}

export function checkCustom(ws: string, r: TrackEventRequest, now: number): IncomingEvent {
  const v = new Violations();
  const externalId = str(v, "externalId", r.externalId, 256, true);
  const eventName = str(v, "eventName", r.eventName, 100, true);
  const eventId = str(v, "eventId", r.eventId, 256, false);
  const at = timestamp(v, r.timestamp, now);
  return finish(v, {
    ...keyedId(ws, "custom", eventId),
    type: "custom",
    at,
    externalId: externalId!,
    eventName: eventName!,
    clickId: str(v, "clickId", r.clickId, 256, false)!,
    metadata: checkMetadata(v, r.metadata)!,
  });
}

/** Validates one batch event; a rejected one gives its error message instead. */
export function checkTracked(ws: string, e: TrackedEvent, now: number): IncomingEvent | { error: string } {
  try {
    switch (e.event.case) {
      case "click":
        return checkClick(ws, e.event.value, now);
      case "lead":
        return checkLead(ws, e.event.value, now);
      case "sale":
        return checkSale(ws, e.event.value, now);
      case "custom":
        return checkCustom(ws, e.event.value, now);
      default:
        return { error: "event: one of click, lead, sale or custom is required" };
    }
  } catch (err) {
    if (err instanceof ConnectError) return { error: err.rawMessage };
    throw err;
  }
}

export function checkWorkspaceId(workspaceId: string): void {
  const v = new Violations();
  if (workspaceId === "") v.add("workspaceId", "is required");
  v.throwIfAny();
}
