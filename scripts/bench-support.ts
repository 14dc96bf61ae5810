/** What the benchmark scripts share: settings from the environment, progress lines, percentiles. */

/** A positive integer setting from the environment, or `fallback` when unset. */
export function intEnv(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < 1) throw new Error(`${name}: expected a positive integer, got "${raw}"`);
  return Number(raw);
}

/** A progress line on stderr (stdout carries the results). */
export const say = (msg: string): void => void process.stderr.write(`bench: ${msg}\n`);

/** The p-th percentile of the samples, nearest-rank. */
export function pct(samples: readonly number[], p: number): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))]!;
}
