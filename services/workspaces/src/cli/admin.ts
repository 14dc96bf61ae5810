/**
 * The operator CLI: `npm run --silent admin -- <command>`. It talks to the running mesh over
 * gRPC (WORKSPACES_ADDR / ANALYTICS_ADDR, default the local mesh at http://127.0.0.1:$GRPC_PORT),
 * so it works against the same backends as `npm start` with no extra flags. Against a mesh that
 * takes mutual TLS it needs an operator certificate: --tls-cert, --tls-key, --tls-ca (or
 * TLS_CERT, TLS_KEY, TLS_CA); the default address is then https:// (docs/internal-auth.md).
 *
 *   workspace create --name <name> --plan <starter|pro|enterprise> [--currency <ISO 4217>] [--rate-limit <per hour>|unlimited]
 *   key create --workspace <id> --scopes <scope,scope,...> [--name <name>] [--test]
 *   key revoke --id <key id>
 *   analytics rebuild --workspace <id>     (on a terminal: progress on stderr while it runs)
 *
 * Every command also takes [--tls-cert <file> --tls-key <file> --tls-ca <file>].
 *
 * Each prints one JSON object on stdout. Bad arguments: one line on stderr, exit 2;
 * a failed call: one line on stderr, exit 1.
 */
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import type { DescService } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { AnalyticsService, WorkspacesService } from "@linquid/contracts";
import { ConfigError, createToolTransport, isTlsFailure, serviceAddress, type ServiceName, type ToolCredentialFlags } from "@linquid/mesh";

class UsageError extends Error {}

const usage = `usage: admin workspace create --name <name> --plan <starter|pro|enterprise> [--currency <code>] [--rate-limit <n>|unlimited]
       admin key create --workspace <id> --scopes <scope,...> [--name <name>] [--test]
       admin key revoke --id <key id>
       admin analytics rebuild --workspace <id>
every command also takes: --tls-cert <file> --tls-key <file> --tls-ca <file> (or TLS_CERT, TLS_KEY, TLS_CA)`;

/** The address of the service the command is calling, named when it can't be reached. */
let calling = serviceAddress("WORKSPACES");

/** The operator credential's files given as flags; each overrides its TLS_* variable. */
let credentialFlags: ToolCredentialFlags = {};
const CREDENTIAL_OPTIONS: ParseArgsOptionsConfig = { "tls-cert": { type: "string" }, "tls-key": { type: "string" }, "tls-ca": { type: "string" } };

function clientOf<S extends DescService>(service: S, name: ServiceName): Client<S> {
  let t: ReturnType<typeof createToolTransport>;
  try {
    t = createToolTransport(name, credentialFlags);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
  calling = t.baseUrl;
  return createClient(service, t.transport);
}

function required(values: Record<string, unknown>, name: string): string {
  const v = values[name];
  if (typeof v !== "string" || v.trim() === "") throw new UsageError(`--${name} is required`);
  return v;
}

/** Polls GetRebuildProgress twice a second and redraws one stderr line; returns what stops it and clears the line. */
function showProgress(client: Client<typeof AnalyticsService>, workspaceId: string): () => void {
  const started = Date.now();
  const count = (n: bigint) => Number(n).toLocaleString("en-US");
  const draw = (text: string) => process.stderr.write(`\r\x1b[K${text}`);
  let stopped = false;
  const timer = setInterval(() => {
    client.getRebuildProgress({ workspaceId }).then(
      (p) => {
        if (stopped || !p.running) return;
        const seconds = Math.round((Date.now() - started) / 1000);
        const share = p.eventsTotal > 0n ? ` (${Math.min(100, Math.floor((Number(p.eventsDone) * 100) / Number(p.eventsTotal)))} %)` : "";
        draw(`rebuilding ${workspaceId}: ${p.phase}, ${count(p.eventsDone)} of ${count(p.eventsTotal)} events${share}, ${seconds} s`);
      },
      () => undefined, // the rebuild call itself reports failures
    );
  }, 500);
  return () => {
    stopped = true;
    clearInterval(timer);
    draw("");
  };
}

async function run(argv: string[]): Promise<unknown> {
  const [noun, verb, ...rest] = argv;
  const parse = (options: ParseArgsOptionsConfig) => {
    try {
      const values = parseArgs({ args: rest, options: { ...CREDENTIAL_OPTIONS, ...options }, strict: true, allowPositionals: false }).values as Record<string, unknown>;
      credentialFlags = { cert: values["tls-cert"] as string | undefined, key: values["tls-key"] as string | undefined, ca: values["tls-ca"] as string | undefined };
      return values;
    } catch (err) {
      throw new UsageError((err as Error).message.split("\n")[0] ?? "bad arguments");
    }
  };
  const workspaces = () => clientOf(WorkspacesService, "WORKSPACES");

  if (noun === "workspace" && verb === "create") {
    const v = parse({ name: { type: "string" }, plan: { type: "string" }, currency: { type: "string" }, "rate-limit": { type: "string" } });
    const name = required(v, "name");
    const plan = required(v, "plan");
    if (!["starter", "pro", "enterprise"].includes(plan)) throw new UsageError(`--plan must be starter, pro or enterprise, got "${plan}"`);
    const rl = v["rate-limit"] as string | undefined;
    if (rl !== undefined && rl !== "unlimited" && !/^[1-9]\d{0,9}$/.test(rl)) throw new UsageError(`--rate-limit must be a positive integer or "unlimited", got "${rl}"`);
    const currency = v["currency"] as string | undefined;
    if (currency !== undefined && !/^[A-Z]{3}$/.test(currency)) throw new UsageError(`--currency must be an ISO 4217 code such as USD, got "${currency}"`);
    const res = await workspaces().createWorkspace({
      name,
      plan,
      ...(currency !== undefined ? { currency } : {}),
      ...(rl === "unlimited" ? { unlimited: true } : rl !== undefined ? { rateLimit: BigInt(rl) } : {}),
    });
    const ws = res.workspace!;
    return { id: ws.id, name: ws.name, plan: ws.plan, currency: ws.currency, rateLimit: ws.rateLimit === undefined ? "unlimited" : Number(ws.rateLimit) };
  }
  if (noun === "key" && verb === "create") {
    const v = parse({ workspace: { type: "string" }, scopes: { type: "string" }, name: { type: "string" }, test: { type: "boolean" } });
    const workspaceId = required(v, "workspace");
    const scopes = required(v, "scopes").split(",").map((s) => s.trim()).filter((s) => s !== "");
    const name = v["name"] as string | undefined;
    const res = await workspaces().createApiKey({ workspaceId, scopes, ...(name !== undefined ? { name } : {}), mode: v["test"] === true ? "test" : "live" });
    return { id: res.apiKey!.id, key: res.key, scopes: res.apiKey!.scopes };
  }
  if (noun === "key" && verb === "revoke") {
    const v = parse({ id: { type: "string" } });
    const res = await workspaces().revokeApiKey({ id: required(v, "id") });
    return { id: res.apiKey!.id, revoked: true };
  }
  if (noun === "analytics" && verb === "rebuild") {
    const v = parse({ workspace: { type: "string" } });
    const workspaceId = required(v, "workspace");
    const client = clientOf(AnalyticsService, "ANALYTICS");
    // On a terminal, the rebuild's progress on one line of stderr while it runs (stdout keeps its one JSON object).
    const stopProgress = process.stderr.isTTY ? showProgress(client, workspaceId) : () => undefined;
    try {
      const res = await client.rebuildWorkspace({ workspaceId }, { timeoutMs: 30 * 60_000 });
      return { workspaceId, customers: Number(res.customers), events: Number(res.events) };
    } finally {
      stopProgress();
    }
  }
  if (noun === "help" || noun === "--help") {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  throw new UsageError(argv.length === 0 ? "a command is required" : `unknown command "${[noun, verb].filter(Boolean).join(" ")}"`);
}

try {
  const out = await run(process.argv.slice(2));
  process.stdout.write(JSON.stringify(out) + "\n");
} catch (err) {
  if (err instanceof UsageError) {
    process.stderr.write(`admin: ${err.message} (see: npm run admin -- help)\n`);
    process.exit(2);
  }
  const ce = ConnectError.from(err);
  let message = `${Code[ce.code]}: ${ce.rawMessage}`;
  if (isTlsFailure(ce)) message = `cannot verify the mesh's certificate (${calling}): ${ce.rawMessage} (is TLS_CA the CA that issued it?)`;
  else if (ce.code === Code.Unavailable) message = `cannot reach the mesh (${calling}): is \`npm start\` running?`;
  else if (ce.code === Code.InvalidArgument || ce.code === Code.NotFound) message = ce.rawMessage;
  else if (ce.code === Code.Unauthenticated) message += " — pass an operator certificate: --tls-cert, --tls-key, --tls-ca (or TLS_CERT, TLS_KEY, TLS_CA)";
  else if (ce.code === Code.PermissionDenied) message += " — an operator certificate is needed";
  process.stderr.write(`admin: ${message}\n`);
  process.exit(1);
}
