/**
 * The HTTP/1.1 listener: turns node:http requests into GatewayRequests for the pipeline and
 * writes its answers. It owns what HTTP itself needs: `/healthz`, the body size limit
 * (413 without buffering past the limit), JSON answers even for unparseable requests, and a
 * graceful stop (no new connections, idle keep-alive sockets closed, in-flight requests
 * finished, everything cut after the shutdown timeout).
 *
 * Streamed answers (context.ts StreamingBody) are written chunk by chunk: the next chunk is
 * asked for only once the socket has taken the previous one ('drain'), so a slow client slows
 * the producer down instead of making anything buffer. A client that goes away aborts the
 * request's signal and stops the producer; one that stops reading for `stallTimeoutMs` is cut
 * off. An error after the first chunk cannot change the status any more: the connection is
 * closed without the final chunk, so the client sees an incomplete body, never a complete-looking one.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { Socket } from "node:net";
import type { Logger } from "@linquid/mesh";
import type { Answer, GatewayRequest, StreamingBody } from "./context.js";
import { HttpError } from "./http-error.js";
import { errorAnswer } from "./pipeline.js";
import { requestIdFrom } from "./request-id.js";

export interface GatewayServerOptions {
  /** API base path, e.g. "/api" ("" = the root). */
  readonly basePath: string;
  readonly maxBodyBytes: number;
  readonly shutdownTimeoutMs: number;
  readonly handle: (req: GatewayRequest) => Promise<Answer>;
  readonly logger: Logger;
  /** How long a streamed answer waits for a client that reads nothing before cutting it off (default 60 s). */
  readonly stallTimeoutMs?: number;
}

export interface GatewayServer {
  readonly server: Server;
  /** Listens; resolves to the base URL (`http://host:port`) with the port actually bound. */
  listen(port: number, host: string): Promise<string>;
  /** Drains: see the module comment. Safe to call twice. */
  stop(): Promise<void>;
}

const BASE_HEADERS = {
  "content-type": "application/json; charset=utf-8",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
} as const;

/**
 * After an answer given while the request body was still arriving (a 413, or an answer that
 * never needed the body), how much more of it is read and thrown away, and for how long, before
 * the connection is cut. See `lingerAfterAnswer`.
 */
const LINGER_BYTES = 64 * 1024 * 1024;
const LINGER_MS = 10_000;

/**
 * Ends a connection whose request body was not read to its end without losing the answer.
 * node:http closes the socket as soon as a `Connection: close` answer is written, and the
 * kernel turns a close with unread bytes (the rest of the body, still arriving) into a reset
 * that can destroy the answer before the client reads it — what raw sockets and fetch saw of
 * a 413. Instead: the answer, then a FIN (half-close), and the rest of the body is read and
 * dropped until the client closes its side too (at most LINGER_BYTES, LINGER_MS).
 */
function lingerAfterAnswer(req: IncomingMessage): void {
  const socket = req.socket as Socket & { destroySoon?: () => void; lingering?: boolean };
  if (socket.lingering === true) return;
  socket.lingering = true;
  // node:http calls destroySoon() once the answer is written: half-close instead of closing.
  socket.destroySoon = () => {
    if (!socket.destroyed && socket.writable) socket.end();
  };
  const cut = () => socket.destroy();
  let dropped = 0;
  req.removeAllListeners("data");
  req.on("data", (chunk: Buffer) => {
    dropped += chunk.length;
    if (dropped > LINGER_BYTES) cut();
  });
  req.resume();
  socket.once("end", cut);
  setTimeout(cut, LINGER_MS).unref();
}

/** True when the request announces a body (HTTP/1.1: a non-zero Content-Length or a Transfer-Encoding). */
function hasBody(req: IncomingMessage): boolean {
  const length = req.headers["content-length"];
  return req.headers["transfer-encoding"] !== undefined || (length !== undefined && length !== "0");
}

function tooLarge(max: number): HttpError {
  return new HttpError(413, "PAYLOAD_TOO_LARGE", `request body is larger than ${max} bytes`);
}

export function createGatewayServer(options: GatewayServerOptions): GatewayServer {
  const { basePath, maxBodyBytes, logger } = options;
  let draining = false;
  let inFlight = 0;
  let idle: (() => void) | undefined;

  const write = (res: ServerResponse, answer: Answer, headers: ReadonlyMap<string, string>, close: boolean) => {
    if (res.headersSent || res.destroyed) return;
    res.statusCode = answer.status;
    for (const [k, v] of Object.entries(BASE_HEADERS)) res.setHeader(k, v);
    for (const [k, v] of headers) res.setHeader(k, v);
    res.setHeader("content-length", Buffer.byteLength(answer.body));
    // A body still arriving (unread, or refused with 413) ends the connection after the answer,
    // gracefully. A request without a body has none to wait for, even before node:http marks it
    // complete (an answer given at once, like /healthz's, comes before that).
    const unread = !res.req.complete && hasBody(res.req);
    if (unread) lingerAfterAnswer(res.req);
    if (close || draining || unread) res.setHeader("connection", "close");
    res.end(answer.body);
  };

  const stallTimeoutMs = options.stallTimeoutMs ?? 60_000;

  /** Resolves once the socket drained, or the response closed or stalled (then destroyed). */
  const drained = (res: ServerResponse) =>
    new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        res.off("drain", done);
        res.off("close", done);
        resolve();
      };
      const timer = setTimeout(() => {
        res.destroy(new Error("client stopped reading"));
        done();
      }, stallTimeoutMs);
      res.once("drain", done);
      res.once("close", done);
    });

  const writeStream = async (res: ServerResponse, status: number, stream: StreamingBody, headers: ReadonlyMap<string, string>, close: boolean) => {
    res.statusCode = status;
    for (const [k, v] of Object.entries(BASE_HEADERS)) res.setHeader(k, v);
    for (const [k, v] of headers) res.setHeader(k, v);
    res.setHeader("content-type", stream.contentType);
    if (close || draining) res.setHeader("connection", "close");
    const chunks = stream.chunks;
    try {
      res.flushHeaders();
      for (;;) {
        const next = await chunks.next();
        if (next.done === true || res.destroyed) break;
        if (!res.write(next.value)) await drained(res);
        if (res.destroyed) break;
      }
      if (!res.destroyed) res.end();
    } catch (err) {
      // A client that went away cancelled the call: nothing failed.
      if (!res.destroyed) logger.error("streamed answer failed", { requestId: headers.get("x-request-id"), error: err instanceof Error ? err.message : String(err) });
      res.destroy();
    } finally {
      await chunks.return(undefined).catch(() => undefined);
    }
  };

  /**
   * `expectsContinue`: the client sent `Expect: 100-continue` and waits for "100 Continue"
   * before sending its body. It gets it only when the body is read, so a declared body over the
   * limit (or a request refused before its body is needed) is answered without the client ever
   * sending it.
   */
  const onRequest = async (req: IncomingMessage, res: ServerResponse, expectsContinue = false) => {
    inFlight++;
    res.once("close", () => {
      inFlight--;
      if (inFlight === 0) idle?.();
    });
    const responseHeaders = new Map<string, string>();
    let close = false;
    const gone = new AbortController();
    res.once("close", () => {
      if (!res.writableFinished) gone.abort();
    });
    try {
      const url = req.url ?? "";
      const q = url.indexOf("?");
      const rawPath = q < 0 ? url : url.slice(0, q);
      if (rawPath === "/healthz") {
        const id = requestIdFrom(req.headers["x-request-id"]);
        const ok = req.method === "GET" || req.method === "HEAD";
        const answer = !ok
          ? errorAnswer(new HttpError(405, "METHOD_NOT_ALLOWED", "use GET"))
          : draining
            ? { status: 503, body: JSON.stringify({ status: "stopping" }) }
            : { status: 200, body: JSON.stringify({ status: "ok" }) };
        write(res, answer, new Map([["x-request-id", id], ...(ok ? [] : [["allow", "GET"] as [string, string]])]), false);
        return;
      }
      const under = rawPath === basePath || rawPath.startsWith(`${basePath}/`);

      let bodyPromise: Promise<Buffer> | undefined;
      const readBody = () =>
        (bodyPromise ??= new Promise<Buffer>((resolve, reject) => {
          const declared = Number(req.headers["content-length"] ?? "0");
          if (declared > maxBodyBytes) {
            close = true;
            reject(tooLarge(maxBodyBytes));
            return;
          }
          if (expectsContinue) res.writeContinue();
          const chunks: Buffer[] = [];
          let size = 0;
          req.on("data", (chunk: Buffer) => {
            size += chunk.length;
            if (size > maxBodyBytes) {
              close = true;
              req.removeAllListeners("data");
              reject(tooLarge(maxBodyBytes));
              return;
            }
            chunks.push(chunk);
          });
          req.once("end", () => resolve(Buffer.concat(chunks)));
          req.once("error", () => reject(new HttpError(400, "VALIDATION_ERROR", "the request body could not be read")));
        }));

      const gatewayRequest: GatewayRequest = {
        method: (req.method ?? "GET").toUpperCase(),
        // Outside the base path nothing matches: routing answers 404 in the usual envelope.
        path: under ? rawPath.slice(basePath.length) : "",
        query: new URLSearchParams(q < 0 ? "" : url.slice(q + 1)),
        headers: req.headers,
        headersDistinct: req.headersDistinct,
        readBody,
        responseHeaders,
        signal: gone.signal,
      };
      const answer = await options.handle(gatewayRequest);
      if (answer.stream !== undefined) {
        if (res.destroyed) await answer.stream.chunks.return(undefined);
        else await writeStream(res, answer.status, answer.stream, responseHeaders, close || gatewayRequest.closeConnection === true);
        return;
      }
      write(res, answer, responseHeaders, close || gatewayRequest.closeConnection === true);
    } catch (err) {
      // The pipeline never throws; this guards the glue above.
      logger.error("request handling failed", { error: err instanceof Error ? err.message : String(err) });
      if (!responseHeaders.has("x-request-id")) responseHeaders.set("x-request-id", requestIdFrom(undefined));
      write(res, errorAnswer(new HttpError(500, "INTERNAL_ERROR", "an unexpected error occurred")), responseHeaders, true);
    }
  };

  const server = createServer(
    {
      // Slow clients cannot hold a connection forever.
      requestTimeout: 30_000,
      headersTimeout: 10_000,
      keepAliveTimeout: 5_000,
    },
    (req, res) => void onRequest(req, res),
  );
  server.on("checkContinue", (req: IncomingMessage, res: ServerResponse) => void onRequest(req, res, true));

  // Requests node:http cannot parse still get the JSON envelope, never its plain-text default.
  server.on("clientError", (err: NodeJS.ErrnoException, socket: Socket) => {
    if (err.code === "ECONNRESET" || !socket.writable) {
      socket.destroy();
      return;
    }
    const [status, reason, message] =
      err.code === "HPE_HEADER_OVERFLOW"
        ? [431, "Request Header Fields Too Large", "request headers are too large"]
        : err.code === "ERR_HTTP_REQUEST_TIMEOUT"
          ? [408, "Request Timeout", "the request took too long to arrive"]
          : [400, "Bad Request", "malformed HTTP request"];
    const body = JSON.stringify({ success: false, error: { code: "VALIDATION_ERROR", message } });
    socket.end(
      `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n` +
        `x-request-id: ${requestIdFrom(undefined)}\r\nconnection: close\r\n\r\n${body}`,
    );
  });

  let stopping: Promise<void> | undefined;
  return {
    server,
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const addr = server.address();
          const actual = typeof addr === "object" && addr !== null ? addr.port : port;
          resolve(`http://${host.includes(":") ? `[${host}]` : host}:${actual}`);
        });
      });
    },
    stop() {
      stopping ??= new Promise<void>((resolve) => {
        draining = true;
        const timer = setTimeout(() => server.closeAllConnections(), options.shutdownTimeoutMs);
        timer.unref();
        server.close(() => {
          clearTimeout(timer);
          resolve();
        });
        // Keep-alive sockets between requests hold nothing; busy ones close after their answer (connection: close).
        server.closeIdleConnections();
        idle = () => server.closeIdleConnections();
        if (!server.listening && inFlight === 0) idle();
      });
      return stopping;
    },
  };
}
