/**
 * Summaries of a V8 CPU profile (`node --cpu-prof`): where a process spent its busy time, by
 * function (self time) and by package, as text for a terminal or a Markdown table.
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  readonly id: number;
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number };
  readonly hitCount?: number;
}

interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileEntry {
  readonly name: string;
  /** Share of the busy samples (idle excluded), 0..1. */
  readonly share: number;
}

export interface ProfileSummary {
  /** Busy time in the profile, ms. */
  readonly busyMs: number;
  readonly functions: readonly ProfileEntry[];
  readonly packages: readonly ProfileEntry[];
}

/** Where a script lives: its npm package, `node:` for Node's own code, or its path in the repository. */
function packageOf(url: string, functionName: string): string {
  if (url === "") return functionName.startsWith("(") ? functionName : "(native)";
  if (url.startsWith("node:")) return "node:internal";
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "/node_modules/".length).split("/");
    return rest[0]!.startsWith("@") ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  const services = url.indexOf("/services/");
  return services >= 0 ? url.slice(services + 1).replace(/^(services\/[^/]+)\/.*$/, "$1") : url.replace(/^file:\/\//, "");
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf("/node_modules/");
  if (nm >= 0) return url.slice(nm + "/node_modules/".length);
  const services = url.indexOf("/services/");
  return services >= 0 ? url.slice(services + 1) : url.replace(/^file:\/\//, "");
}

const top = (m: Map<string, number>, total: number, n: number): ProfileEntry[] =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, n)
    .map(([name, us]) => ({ name, share: us / total }));

/** Self time per function and per package of the profile at `path`; the `n` largest of each. */
export function summarizeProfile(path: string, n = 15): ProfileSummary {
  const profile = JSON.parse(readFileSync(path, "utf8")) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const fns = new Map<string, number>();
  const pkgs = new Map<string, number>();
  let busy = 0;
  // A sample's weight is the time until the next one (timeDeltas[i + 1]).
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]!);
    if (node === undefined) continue;
    const { functionName, url, lineNumber } = node.callFrame;
    if (functionName === "(idle)") continue;
    const us = profile.timeDeltas[i + 1] ?? 0;
    busy += us;
    const fn = url === "" ? functionName || "(anonymous)" : `${functionName || "(anonymous)"} ${shortUrl(url)}:${lineNumber + 1}`;
    fns.set(fn, (fns.get(fn) ?? 0) + us);
    const pkg = packageOf(url, functionName);
    pkgs.set(pkg, (pkgs.get(pkg) ?? 0) + us);
  }
  return { busyMs: busy / 1000, functions: top(fns, busy || 1, n), packages: top(pkgs, busy || 1, n) };
}

/** The summary as two Markdown tables (self time by function, by package); per request when `requests` is given. */
export function profileMarkdown(title: string, s: ProfileSummary, requests?: number): string {
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const per = (x: number) => (requests === undefined ? "" : ` ${((x * s.busyMs * 1000) / requests).toFixed(1)} |`);
  const head = requests === undefined ? "" : " µs/request |";
  const rule = requests === undefined ? "" : "---|";
  const busy = requests === undefined ? "" : `, ${((s.busyMs * 1000) / requests).toFixed(0)} µs CPU a request`;
  const lines = [`${title} — ${Math.round(s.busyMs)} ms busy${busy}`, "", `| self time |${head} function |`, `|---|${rule}---|`];
  for (const f of s.functions) lines.push(`| ${pct(f.share)} |${per(f.share)} \`${f.name}\` |`);
  lines.push("", `| self time |${head} package |`, `|---|${rule}---|`);
  for (const p of s.packages) lines.push(`| ${pct(p.share)} |${per(p.share)} ${p.name} |`);
  return lines.join("\n");
}
