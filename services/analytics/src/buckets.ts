/**
 * Bucket keys, computed at write time in UTC: ISO weeks ("2026-W14"), months ("2026-04"),
 * days ("2026-04-01"), and month arithmetic for LTV offsets.
 */

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

/** "2026-04-01" (UTC). */
export function dayKey(at: Date): string {
  return `${pad(at.getUTCFullYear(), 4)}-${pad(at.getUTCMonth() + 1)}-${pad(at.getUTCDate())}`;
}

/** "2026-04" (UTC). */
export function monthKey(at: Date): string {
  return `${pad(at.getUTCFullYear(), 4)}-${pad(at.getUTCMonth() + 1)}`;
}

/**
 * ISO 8601 week of the UTC date: weeks start on Monday and week 1 holds the year's first
 * Thursday, so 2026-01-01 (a Thursday) is 2026-W01 and 2027-01-01 (a Friday) is 2026-W53.
 */
export function isoWeekKey(at: Date): string {
  const d = new Date(Date.UTC(at.getUTCFullYear(), at.getUTCMonth(), at.getUTCDate()));
  const dow = d.getUTCDay() || 7; // Monday = 1 … Sunday = 7
  d.setUTCDate(d.getUTCDate() + 4 - dow); // the Thursday of this week decides the year
  const year = d.getUTCFullYear();
  const week = Math.ceil(((d.getTime() - Date.UTC(year, 0, 1)) / 86_400_000 + 1) / 7);
  return `${pad(year, 4)}-W${pad(week)}`;
}

/** Months since year 0: monthIndex(2026-04) - monthIndex(2026-01) = 3. */
export function monthIndex(at: Date): number {
  return at.getUTCFullYear() * 12 + at.getUTCMonth();
}

/** monthIndex of a "YYYY-MM" key. */
export function monthIndexOfKey(key: string): number {
  return Number(key.slice(0, 4)) * 12 + Number(key.slice(5, 7)) - 1;
}

/** The "YYYY-MM" key of a monthIndex. */
export function monthKeyOfIndex(index: number): string {
  return `${pad(Math.floor(index / 12), 4)}-${pad((index % 12) + 1)}`;
}

/** Start of the UTC day of a "YYYY-MM-DD" key, in ms. */
export function dayStartMs(day: string): number {
  return Date.UTC(Number(day.slice(0, 4)), Number(day.slice(5, 7)) - 1, Number(day.slice(8, 10)));
}

export const DAY_MS = 86_400_000;
