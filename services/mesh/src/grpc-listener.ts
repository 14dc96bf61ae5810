/**
 * The listener of the internal gRPC port. Without credentials: HTTP/2 in plaintext (h2c), as
 * the embedded default has always served. With credentials (credentials.ts): the same port takes
 * TLS that asks every client for a certificate, and still answers plaintext connections.
 *
 * Why both on one port: the kubelet's `grpc:` probes speak plaintext only, and a caller without
 * a credential should learn so as UNAUTHENTICATED rather than as a broken connection. The first
 * byte of a connection tells them apart (0x16 opens a TLS handshake; an HTTP/2 connection opens
 * with "PRI"). Either way the call meets the authorization interceptor (authorization.ts), which
 * lets a plaintext or certificate-less caller reach only health checks and reflection.
 *
 * The TLS side does not reject an unverifiable certificate during the handshake
 * (rejectUnauthorized: false) for the same reason; the interceptor refuses its calls.
 */
import { createServer as createNetServer, type Server, type Socket } from "node:net";
import { createSecureServer, createServer as createH2Server, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import type { Credentials, LoadedCredential } from "./credentials.js";

type Handler = (request: Http2ServerRequest, response: Http2ServerResponse) => void;

/** A connection that sends nothing for this long before its first byte is closed. */
const FIRST_BYTE_TIMEOUT_MS = 10_000;

/** The TLS options of a credential, for the secure server and its reloads. */
function tlsOptions(c: LoadedCredential) {
  return { cert: c.pem.cert, key: c.pem.key, ca: c.pem.ca };
}

/**
 * The gRPC port's server: listen, address and close as any net.Server; it emits 'session' for
 * each HTTP/2 session it serves, plaintext or TLS, so the host can close them on stop.
 */
export function createGrpcListener(handler: Handler, credentials: Credentials | undefined): Server {
  if (credentials === undefined) return createH2Server(handler);

  const plain = createH2Server(handler);
  const secure: Http2SecureServer = createSecureServer({ ...tlsOptions(credentials.current()), requestCert: true, rejectUnauthorized: false, ALPNProtocols: ["h2"] }, handler);
  // New connections take the reloaded certificate; open ones keep theirs.
  credentials.onReload((c) => secure.setSecureContext(tlsOptions(c)));

  const front = createNetServer((socket: Socket) => {
    const drop = () => socket.destroy();
    socket.on("error", drop);
    socket.setTimeout(FIRST_BYTE_TIMEOUT_MS, drop);
    socket.once("readable", () => {
      const first = socket.read(1) as Buffer | null;
      if (first === null) {
        drop(); // closed before a byte came
        return;
      }
      socket.unshift(first);
      socket.setTimeout(0);
      socket.off("error", drop);
      (first[0] === 0x16 ? secure : plain).emit("connection", socket);
    });
  });
  for (const inner of [plain, secure] as const) inner.on("session", (session) => front.emit("session", session));
  return front;
}
