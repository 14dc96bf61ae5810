// Renders every kustomize target under deploy/ and checks what the manifests promise:
// hardened pods, probes, resources, a grace period that covers the drain, the metrics port
// announced to Prometheus, Services that select a pod with the named port, env names config.ts
// knows, and the addresses each layout's calls need. Needs `kubectl` (or `kustomize`) on PATH;
// installs nothing.
//   node deploy/check.mjs
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseAllDocuments } from "yaml";

const deployDir = dirname(fileURLToPath(import.meta.url));
const root = dirname(deployDir);

// Every variable config.ts reads, itself or through credentials.ts (plus <PLUGIN>_ADDR, built from the plugin names).
const configSource = ["config.ts", "credentials.ts"].map((f) => readFileSync(join(root, "services/mesh/src", f), "utf8")).join("\n");
const plugins = ["workspaces", "customers", "analytics", "gateway"];
const knownEnv = new Set([...configSource.matchAll(/"([A-Z][A-Z0-9_]+)"/g)].map((m) => m[1]));
for (const p of plugins) knownEnv.add(`${p.toUpperCase()}_ADDR`);
// Which services each plugin calls, and which need a database.
const calls = { gateway: ["workspaces", "customers", "analytics"], analytics: ["customers", "workspaces"], customers: ["analytics"], workspaces: [] };
const needsMongo = new Set(["workspaces", "customers", "analytics"]);
// main.ts exits at SHUTDOWN_TIMEOUT_MS + 1500 ms; the preStop pause comes before SIGTERM.
const HARD_EXIT_MARGIN_MS = 1500;

/** Targets: the overlays, the base, and each component on top of the base. */
const targets = [
  "base",
  "overlays/production",
  "overlays/single-process",
  { name: "base + components/otel", components: ["otel"] },
  { name: "base + components/network-policies", components: ["network-policies"] },
  { name: "base + components/mutual-tls", components: ["mutual-tls"] },
  { name: "single-process + mutual-tls", components: ["single-process", "mutual-tls"] },
  { name: "single-process + otel", components: ["single-process", "otel"] },
];

function kustomize(dir) {
  for (const [cmd, args] of [["kubectl", ["kustomize", dir]], ["kustomize", ["build", dir]]]) {
    const r = spawnSync(cmd, args, { encoding: "utf8" });
    if (r.error?.code === "ENOENT") continue;
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed:\n${r.stderr}`);
    return r.stdout;
  }
  throw new Error("neither kubectl nor kustomize is on PATH");
}

function render(target) {
  if (typeof target === "string") return kustomize(join(deployDir, target));
  // A throwaway kustomization inside deploy/ (kustomize refuses paths outside its root).
  const dir = join(deployDir, `.check-${process.pid}`);
  const body = ["resources: [../base]", `components: [${target.components.map((c) => `../components/${c}`).join(", ")}]`].join("\n");
  mkdirSync(dir);
  try {
    writeFileSync(join(dir, "kustomization.yaml"), body);
    return kustomize(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function check(name, yamlText) {
  const problems = [];
  const fail = (msg) => problems.push(msg);
  const docs = parseAllDocuments(yamlText);
  for (const d of docs) if (d.errors.length > 0) fail(`YAML: ${d.errors[0].message}`);
  const objs = docs.map((d) => d.toJS());
  const of = (kind) => objs.filter((o) => o.kind === kind);
  const configMaps = new Map(of("ConfigMap").map((c) => [c.metadata.name, c.data ?? {}]));
  const serviceAccounts = new Set(of("ServiceAccount").map((s) => s.metadata.name));
  const served = new Set();
  const deployments = of("Deployment");
  if (deployments.length === 0) fail("no Deployment");

  for (const dep of deployments) {
    const id = `Deployment ${dep.metadata.name}`;
    const pod = dep.spec.template.spec;
    if (pod.securityContext?.runAsNonRoot !== true) fail(`${id}: runAsNonRoot`);
    if (pod.securityContext?.seccompProfile?.type !== "RuntimeDefault") fail(`${id}: seccompProfile RuntimeDefault`);
    if (pod.automountServiceAccountToken !== false) fail(`${id}: automountServiceAccountToken false`);
    if (!serviceAccounts.has(pod.serviceAccountName)) fail(`${id}: ServiceAccount ${pod.serviceAccountName} not rendered`);
    for (const c of pod.containers) {
      const sc = c.securityContext ?? {};
      if (sc.readOnlyRootFilesystem !== true) fail(`${id}: readOnlyRootFilesystem`);
      if (sc.allowPrivilegeEscalation !== false) fail(`${id}: allowPrivilegeEscalation false`);
      if (!(sc.capabilities?.drop ?? []).includes("ALL")) fail(`${id}: capabilities drop ALL`);
      for (const k of ["cpu", "memory"]) {
        if (c.resources?.requests?.[k] === undefined || c.resources?.limits?.[k] === undefined) fail(`${id}: ${k} request and limit`);
      }
      const tmp = (c.volumeMounts ?? []).find((m) => m.mountPath === "/tmp");
      if (tmp === undefined || !pod.volumes?.some((v) => v.name === tmp.name && v.emptyDir !== undefined)) fail(`${id}: emptyDir at /tmp`);
      if (c.readinessProbe === undefined || c.livenessProbe === undefined) fail(`${id}: readiness and liveness probes`);

      // The environment the process will see.
      const env = {};
      for (const ref of c.envFrom ?? []) {
        const data = configMaps.get(ref.configMapRef?.name);
        if (data === undefined) fail(`${id}: ConfigMap ${ref.configMapRef?.name} not rendered`);
        Object.assign(env, data);
      }
      for (const e of c.env ?? []) env[e.name] = e.value ?? (e.valueFrom?.secretKeyRef ? `<secret ${e.valueFrom.secretKeyRef.name}/${e.valueFrom.secretKeyRef.key}>` : "<ref>");
      for (const k of Object.keys(env)) if (!knownEnv.has(k)) fail(`${id}: ${k} is not read by config.ts`);
      for (const e of c.env ?? []) {
        const ref = e.valueFrom?.secretKeyRef;
        if (ref !== undefined && (ref.name !== "linquid-backends" || !["mongodb-uri", "redis-url"].includes(ref.key))) fail(`${id}: unexpected secret ${ref.name}/${ref.key}`);
      }
      if (env.BIND_HOST !== "0.0.0.0") fail(`${id}: BIND_HOST must be 0.0.0.0`);
      const running = String(env.MESH_PLUGINS ?? "").split(",").filter(Boolean);
      if (running.length === 0 || running.some((p) => !plugins.includes(p))) fail(`${id}: MESH_PLUGINS "${env.MESH_PLUGINS}"`);
      for (const p of running) {
        served.add(p);
        for (const callee of calls[p]) {
          if (!running.includes(callee) && !/^https?:\/\//.test(env[`${callee.toUpperCase()}_ADDR`] ?? "")) fail(`${id}: ${p} calls ${callee} but ${callee.toUpperCase()}_ADDR is unset`);
        }
      }
      if (running.some((p) => needsMongo.has(p)) && env.MONGODB_URI === undefined) fail(`${id}: needs MONGODB_URI`);
      if (env.REDIS_URL === undefined && running.some((p) => p !== "workspaces")) fail(`${id}: needs REDIS_URL`);

      // Mutual TLS: all three files, each on a mounted Secret, and peers called at https:// (config.ts refuses the rest).
      const tlsFiles = ["TLS_CERT", "TLS_KEY", "TLS_CA"].filter((k) => env[k] !== undefined);
      if (tlsFiles.length > 0) {
        if (tlsFiles.length < 3) fail(`${id}: TLS_CERT, TLS_KEY and TLS_CA go together`);
        for (const k of tlsFiles) {
          const mount = (c.volumeMounts ?? []).find((m) => env[k].startsWith(`${m.mountPath}/`));
          if (mount === undefined || !pod.volumes?.some((v) => v.name === mount.name && v.secret !== undefined)) fail(`${id}: ${k} ${env[k]} is on no mounted Secret`);
        }
        for (const p of plugins) if (/^http:/.test(env[`${p.toUpperCase()}_ADDR`] ?? "")) fail(`${id}: ${p.toUpperCase()}_ADDR must be https:// with TLS_CERT`);
      }

      // Probes: gRPC health on GRPC_PORT where RPC services run; the gateway alone answers REST.
      const grpcPort = Number(env.GRPC_PORT ?? 8090);
      const hasRpc = running.some((p) => p !== "gateway");
      const probePorts = [c.readinessProbe, c.livenessProbe].filter(Boolean).map((pr) => pr.grpc?.port ?? pr.httpGet?.port);
      for (const pr of [c.readinessProbe, c.livenessProbe].filter(Boolean)) {
        if (pr.grpc !== undefined && (!hasRpc || pr.grpc.port !== grpcPort)) fail(`${id}: gRPC probe on ${pr.grpc.port} but gRPC serves on ${hasRpc ? grpcPort : "nothing"}`);
        if (pr.httpGet !== undefined && (!running.includes("gateway") || pr.httpGet.path !== "/healthz")) fail(`${id}: httpGet probe needs the gateway's /healthz`);
      }
      if (probePorts.some((p) => typeof p === "string" && !(c.ports ?? []).some((cp) => cp.name === p))) fail(`${id}: probe names a port the container lacks`);

      // Metrics: the port METRICS_PORT names, exposed and announced to Prometheus' pod discovery.
      if (env.METRICS_PORT !== "off") {
        const metricsPort = Number(env.METRICS_PORT ?? 9464);
        if (!(c.ports ?? []).some((cp) => cp.name === "metrics" && cp.containerPort === metricsPort)) fail(`${id}: no container port "metrics" on METRICS_PORT ${metricsPort}`);
        const ann = dep.spec.template.metadata.annotations ?? {};
        if (ann["prometheus.io/scrape"] !== "true" || ann["prometheus.io/port"] !== String(metricsPort)) fail(`${id}: prometheus.io/scrape and prometheus.io/port ${metricsPort} annotations`);
      }

      // SIGTERM comes after preStop; the process is gone SHUTDOWN_TIMEOUT_MS + margin later.
      const preStopMs = Number(c.lifecycle?.preStop?.exec?.command?.[0] === "sleep" ? c.lifecycle.preStop.exec.command[1] : 0) * 1000;
      const needMs = preStopMs + Number(env.SHUTDOWN_TIMEOUT_MS ?? 8000) + HARD_EXIT_MARGIN_MS;
      const graceMs = (pod.terminationGracePeriodSeconds ?? 30) * 1000;
      if (graceMs <= needMs) fail(`${id}: terminationGracePeriodSeconds ${graceMs / 1000}s must exceed ${needMs / 1000}s`);
    }
  }
  for (const p of plugins) if (!served.has(p)) fail(`no pod runs ${p}`);

  // Each Service selects a rendered pod that has its named target port.
  for (const svc of of("Service")) {
    const id = `Service ${svc.metadata.name}`;
    if ((svc.spec.type ?? "ClusterIP") !== "ClusterIP") fail(`${id}: ClusterIP`);
    const pods = deployments.filter((d) => Object.entries(svc.spec.selector).every(([k, v]) => d.spec.template.metadata.labels?.[k] === v));
    if (pods.length === 0) fail(`${id}: selects no pod`);
    for (const port of svc.spec.ports) {
      if (!["grpc", "http"].includes(port.name)) fail(`${id}: port named grpc or http, got ${port.name}`);
      for (const d of pods) if (!d.spec.template.spec.containers.some((c) => (c.ports ?? []).some((cp) => cp.name === port.targetPort))) fail(`${id}: pod ${d.metadata.name} has no port ${port.targetPort}`);
    }
  }
  if (!of("Service").some((s) => s.metadata.name === "gateway")) fail("no gateway Service");

  console.log(`${problems.length === 0 ? "ok  " : "FAIL"} ${name}: ${objs.map((o) => o.kind).sort().join(", ")}`);
  for (const p of problems) console.log(`     - ${p}`);
  return problems.length === 0;
}

let ok = true;
for (const t of targets) {
  const name = typeof t === "string" ? t : t.name;
  try {
    ok = check(name, render(t)) && ok;
  } catch (err) {
    console.log(`FAIL ${name}: ${err.message}`);
    ok = false;
  }
}
process.exit(ok ? 0 : 1);
