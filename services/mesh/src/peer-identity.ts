/**
 * Who is calling over the internal gRPC port: the identity in the client certificate of the
 * call's TLS connection, handed to interceptors through a context value.
 *
 * An identity is `service:<plugin>` (a process of the mesh) or `operator:<name>` (an operator
 * tool such as the admin CLI). A certificate names it as a SPIFFE-style URI SAN,
 * `spiffe://<trust domain>/service/<plugin>`, or else as its subject CN, `service:<plugin>`.
 * The trust domain is not checked: trust comes from the CA bundle (TLS_CA) alone.
 */
import type { X509Certificate } from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { TLSSocket } from "node:tls";
import { createContextKey } from "@connectrpc/connect";

const IDENTITY = /^(service|operator):[a-z0-9][a-z0-9-]*$/;
const SPIFFE = /^spiffe:\/\/[^/]+\/(service|operator)\/([a-z0-9][a-z0-9-]*)$/;

/** The identity a certificate names (URI SAN first, then CN), or undefined. */
export function identityOfCertificate(cert: X509Certificate): string | undefined {
  // Node lists SANs as `URI:…, DNS:…`; a value with a comma or quote would be quoted, and no
  // identity of ours has one.
  for (const entry of (cert.subjectAltName ?? "").split(", ")) {
    const m = entry.startsWith("URI:") ? SPIFFE.exec(entry.slice(4)) : null;
    if (m !== null) return `${m[1]}:${m[2]}`;
  }
  const cn = /(?:^|\n)CN=([^\n]*)/.exec(cert.subject)?.[1];
  return cn !== undefined && IDENTITY.test(cn) ? cn : undefined;
}

/** What the connection of a call shows about its caller. */
export type Peer =
  /** A plaintext (h2c) connection: no credential at all. */
  | { readonly kind: "plaintext" }
  /** TLS without a client certificate, or with one the CA bundle does not vouch for. */
  | { readonly kind: "untrusted"; readonly reason: string }
  /** A certificate the CA bundle vouches for; identity undefined when it names none. */
  | { readonly kind: "trusted"; readonly identity: string | undefined; readonly subject: string };

/** The caller of a call that came over the network; unset for calls within the process. */
export const peerKey = createContextKey<Peer | undefined>(undefined, { description: "linquid peer identity" });

// A connection's certificate never changes (HTTP/2 forbids renegotiation): one look per connection.
const seen = new WeakMap<object, Peer>();

function peerOfSocket(socket: TLSSocket): Peer {
  const cert = socket.getPeerX509Certificate();
  if (cert === undefined) return { kind: "untrusted", reason: "no client certificate" };
  if (!socket.authorized) return { kind: "untrusted", reason: `client certificate not trusted (${String(socket.authorizationError)})` };
  return { kind: "trusted", identity: identityOfCertificate(cert), subject: cert.subject.replace(/\n/g, ", ") };
}

/** The caller of a request the gRPC server received. */
export function peerOfRequest(req: IncomingMessage | Http2ServerRequest): Peer {
  // An HTTP/2 request's own `socket` is a proxy; the session's socket is the connection.
  const socket = ("stream" in req ? req.stream.session?.socket : req.socket) as (TLSSocket & { encrypted?: boolean }) | undefined;
  if (socket === undefined || socket.encrypted !== true) return { kind: "plaintext" };
  let peer = seen.get(socket);
  if (peer === undefined) {
    peer = peerOfSocket(socket);
    seen.set(socket, peer);
  }
  return peer;
}
