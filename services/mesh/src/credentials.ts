/**
 * The credential of a process on the internal gRPC port: a certificate, its key and the CA
 * bundle peers are checked against, read from files (TLS_CERT, TLS_KEY, TLS_CA) — in a pod,
 * the Secret cert-manager keeps up to date, mounted as a volume. The files are read again every
 * TLS_RELOAD_INTERVAL_MS; when they changed (and the new set is valid), new connections, both
 * served and dialled, use them; open connections keep the credential they were made with.
 * docs/internal-auth.md has the whole picture.
 */
import { X509Certificate } from "node:crypto";
import { readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createSecureContext, type SecureContext } from "node:tls";
import type { SecureClientSessionOptions } from "node:http2";
import { ConfigError } from "./config.js";
import type { Logger } from "./logger.js";
import { identityOfCertificate } from "./peer-identity.js";

/** Where the credential's files are, and how often they are read again. */
export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  readonly caFile: string;
  /** TLS_RELOAD_INTERVAL_MS (default 30 s). */
  readonly reloadIntervalMs: number;
}

type Env = Readonly<Record<string, string | undefined>>;

export const DEFAULT_TLS_RELOAD_INTERVAL_MS = 30_000;

/**
 * TLS_CERT, TLS_KEY and TLS_CA (all three or none) and TLS_RELOAD_INTERVAL_MS; undefined when
 * none is set, i.e. the internal port takes plaintext calls from anyone (the embedded default).
 */
export function tlsFilesFromEnv(env: Env): TlsFiles | undefined {
  const names = ["TLS_CERT", "TLS_KEY", "TLS_CA"] as const;
  const set = names.filter((n) => env[n] !== undefined && env[n] !== "");
  if (set.length === 0) return undefined;
  const missing = names.find((n) => !set.includes(n));
  if (missing !== undefined) throw new ConfigError(`${missing}: required with ${set.join(" and ")} (mutual TLS needs a certificate, its key and the CA bundle)`);
  const raw = env["TLS_RELOAD_INTERVAL_MS"];
  let reloadIntervalMs = DEFAULT_TLS_RELOAD_INTERVAL_MS;
  if (raw !== undefined && raw !== "") {
    if (!/^\d+$/.test(raw)) throw new ConfigError(`TLS_RELOAD_INTERVAL_MS: expected an integer, got "${raw}"`);
    reloadIntervalMs = Number(raw);
    if (reloadIntervalMs < 100 || reloadIntervalMs > 3_600_000) throw new ConfigError(`TLS_RELOAD_INTERVAL_MS: must be between 100 and 3600000, got ${reloadIntervalMs}`);
  }
  return { certFile: env["TLS_CERT"]!, keyFile: env["TLS_KEY"]!, caFile: env["TLS_CA"]!, reloadIntervalMs };
}

/** One loaded set of files. */
export interface LoadedCredential {
  readonly pem: { readonly cert: Buffer; readonly key: Buffer; readonly ca: Buffer };
  readonly context: SecureContext;
  /** `service:<name>` or `operator:<name>` from the certificate; undefined when it names none. */
  readonly identity: string | undefined;
  readonly notAfter: Date;
}

function build(pem: LoadedCredential["pem"], files: TlsFiles): LoadedCredential {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(pem.cert);
  } catch (err) {
    throw new ConfigError(`TLS_CERT: ${files.certFile} holds no PEM certificate (${(err as Error).message})`);
  }
  try {
    new X509Certificate(pem.ca);
  } catch (err) {
    throw new ConfigError(`TLS_CA: ${files.caFile} holds no PEM certificate (${(err as Error).message})`);
  }
  let context: SecureContext;
  try {
    // Also checks that the key belongs to the certificate.
    context = createSecureContext({ cert: pem.cert, key: pem.key, ca: pem.ca });
  } catch (err) {
    throw new ConfigError(`TLS_KEY: ${files.keyFile} does not go with ${files.certFile} (${(err as Error).message})`);
  }
  return { pem, context, identity: identityOfCertificate(cert), notAfter: new Date(cert.validTo) };
}

/** Reads and checks the files once; a ConfigError names the variable of the file at fault. */
export function loadCredential(files: TlsFiles): LoadedCredential {
  const read = (name: string, path: string) => {
    try {
      return readFileSync(path);
    } catch (err) {
      throw new ConfigError(`${name}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }
  };
  return build({ cert: read("TLS_CERT", files.certFile), key: read("TLS_KEY", files.keyFile), ca: read("TLS_CA", files.caFile) }, files);
}

/** The credential in force, kept in step with its files. */
export interface Credentials {
  readonly files: TlsFiles;
  current(): LoadedCredential;
  /** Called after each reload with the new credential (the secure server swaps its context). */
  onReload(listener: (credential: LoadedCredential) => void): void;
  /**
   * Options for http2.connect: the secure context is looked up at each new connection, so a
   * session manager holding these options dials with the credential in force.
   */
  clientSessionOptions(): SecureClientSessionOptions;
  /** Reads the files now (the timer does it every reloadIntervalMs); resolves true when they changed. */
  reload(): Promise<boolean>;
  stop(): void;
}

/**
 * Loads the credential (throwing a ConfigError when it cannot be used) and reads its files again
 * every `files.reloadIntervalMs`. A changed set that does not load — a certificate and a key of
 * different rotations, as a copy in progress leaves them — is logged and retried at the next
 * tick; the previous credential stays in force meanwhile. (Kubernetes swaps a Secret volume's
 * files at once, through a symlink, so that is rare there.)
 */
export function watchCredentials(files: TlsFiles, logger: Logger): Credentials {
  let credential = loadCredential(files);
  const listeners: Array<(c: LoadedCredential) => void> = [];
  let failing: string | undefined;
  let stopped = false;

  const reload = async (): Promise<boolean> => {
    let pem: LoadedCredential["pem"];
    try {
      const [cert, key, ca] = await Promise.all([readFile(files.certFile), readFile(files.keyFile), readFile(files.caFile)]);
      pem = { cert, key, ca };
    } catch (err) {
      const message = (err as Error).message;
      if (failing !== message) logger.warn("TLS credential files unreadable; the loaded credential stays in force", { error: message });
      failing = message;
      return false;
    }
    const old = credential.pem;
    if (pem.cert.equals(old.cert) && pem.key.equals(old.key) && pem.ca.equals(old.ca)) return false;
    let next: LoadedCredential;
    try {
      next = build(pem, files);
    } catch (err) {
      const message = (err as Error).message;
      if (failing !== message) logger.warn("TLS credential files changed but do not load; the loaded credential stays in force", { error: message });
      failing = message;
      return false;
    }
    if (stopped) return false;
    failing = undefined;
    credential = next;
    logger.info("TLS credential reloaded", { identity: next.identity, notAfter: next.notAfter.toISOString() });
    for (const l of listeners) l(next);
    return true;
  };

  const timer = setInterval(() => void reload(), files.reloadIntervalMs);
  timer.unref();
  return {
    files,
    current: () => credential,
    onReload: (listener) => void listeners.push(listener),
    clientSessionOptions() {
      return {
        get secureContext() {
          return credential.context;
        },
      };
    },
    reload,
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}

/**
 * Peers are dialled as their address says, so the scheme must match the port's: `https://`
 * when this process holds a credential (mutual TLS), `http://` when it does not.
 */
export function checkPeerSchemes(tls: TlsFiles | undefined, addrs: Readonly<Record<string, string | undefined>>): void {
  for (const [plugin, addr] of Object.entries(addrs)) {
    if (addr === undefined) continue;
    const name = `${plugin.toUpperCase()}_ADDR`;
    if (tls !== undefined && addr.startsWith("http:")) throw new ConfigError(`${name}: must be https:// when TLS_CERT is set (peers are called with mutual TLS)`);
    if (tls === undefined && addr.startsWith("https:")) throw new ConfigError(`${name}: https:// needs TLS_CERT, TLS_KEY and TLS_CA (the credential to call it with)`);
  }
}
