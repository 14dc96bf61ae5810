import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { request as httpRequest, Agent } from "node:http";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createLogger } from "@linquid/mesh";
import { afterEach, describe, expect, it } from "vitest";
import type { Answer, GatewayRequest } from "../../src/context.js";
import { createGatewayServer, type GatewayServer } from "../../src/server.js";

const logger = createLogger("test", "error");
let servers: GatewayServer[] = [];
afterEach(async () => {
  await Promise.all(servers.map((s) => s.stop()));
  servers = [];
});

async function start(handle: (req: GatewayRequest) => Promise<Answer>, shutdownTimeoutMs = 2000) {
  const s = createGatewayServer({ basePath: "/api", maxBodyBytes: 1024 * 1024, shutdownTimeoutMs, handle, logger });
  servers.push(s);
  return { s, url: await s.listen(0, "127.0.0.1") };
}

const echoBody = async (req: GatewayRequest): Promise<Answer> => {
  req.responseHeaders.set("x-request-id", "rid");
  try {
    const body = await req.readBody();
    return { status: 200, body: JSON.stringify({ bytes: body.length, path: req.path }) };
  } catch (e) {
    const err = e as { status: number; code: string };
    return { status: err.status, body: JSON.stringify({ success: false, error: { code: err.code } }) };
  }
};

describe("gateway HTTP server", () => {
  it("answers /healthz outside the base path", async () => {
    const { url } = await start(echoBody);
    const res = await fetch(`${url}/healthz`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: "ok" });
    expect(res.headers.get("x-request-id")).toBeTruthy();
    expect((await fetch(`${url}/healthz`, { method: "POST" })).status).toBe(405);
  });

  it("keeps a connection open across requests answered at once (/healthz) and through the pipeline", async () => {
    const { url } = await start(async () => ({ status: 200, body: "{}" }));
    const { port } = new URL(url);
    // Four requests written at once on one socket (pipelined): each answered, none closing it.
    const socket = connect(Number(port), "127.0.0.1");
    const got = new Promise<string>((resolve) => {
      let text = "";
      socket.on("data", (d: Buffer) => {
        text += d.toString();
        if (text.split("HTTP/1.1 200").length === 5) resolve(text);
      });
      socket.on("close", () => resolve(text));
    });
    const get = (path: string) => `GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`;
    socket.write(get("/healthz") + get("/api/customers") + get("/healthz") + get("/healthz"));
    const text = await got;
    socket.destroy();
    expect(text.toLowerCase()).not.toContain("connection: close");
    expect(text.match(/HTTP\/1\.1 200/g)).toHaveLength(4);
  });

  it("hands paths below the base path to the pipeline, others with an empty path", async () => {
    const { url } = await start(echoBody);
    // fetch would normalize %2e%2e away; node:http sends the path as written.
    const raw = await new Promise<string>((resolve, reject) => {
      const r = httpRequest(`${url}/api/customers/%2e%2e?x=1`, { path: "/api/customers/%2e%2e?x=1" }, (res) => {
        let body = "";
        res.on("data", (d) => (body += d));
        res.on("end", () => resolve(body));
      });
      r.on("error", reject);
      r.end();
    });
    expect(JSON.parse(raw)).toMatchObject({ path: "/customers/%2e%2e" });
    expect(await (await fetch(`${url}/apix/customers`)).json()).toMatchObject({ path: "" });
    expect(await (await fetch(`${url}/customers`)).json()).toMatchObject({ path: "" });
  });

  it("answers 413 to a body over the limit, declared or chunked, and the client sees the answer", async () => {
    const { url } = await start(echoBody);
    const big = "x".repeat(1024 * 1024 + 1);
    const declared = await fetch(`${url}/api/customers`, { method: "POST", body: big, headers: { "content-type": "application/json" } });
    expect(declared.status).toBe(413);
    expect(await declared.json()).toEqual({ success: false, error: { code: "PAYLOAD_TOO_LARGE" } });
    expect(declared.headers.get("connection")).toBe("close");

    const chunks = async function* () {
      for (let i = 0; i < 40; i++) yield new TextEncoder().encode("y".repeat(64 * 1024));
    };
    const chunked = await fetch(`${url}/api/customers`, { method: "POST", body: ReadableStream.from(chunks()), duplex: "half", headers: { "content-type": "application/json" } } as RequestInit);
    expect(chunked.status).toBe(413);
    // Just at the limit is fine.
    const atLimit = await fetch(`${url}/api/customers`, { method: "POST", body: "z".repeat(1024 * 1024) });
    expect(await atLimit.json()).toMatchObject({ bytes: 1024 * 1024 });
  });

  it("answers unparseable HTTP with the JSON envelope", async () => {
    const { url } = await start(echoBody);
    const port = Number(new URL(url).port);
    const raw = await new Promise<string>((resolve) => {
      const sock = connect(port, "127.0.0.1", () => sock.write("GARBAGE / HTTP/1.1\r\nHost: x\r\n\r\n"));
      let out = "";
      sock.on("data", (d) => (out += d.toString()));
      sock.on("close", () => resolve(out));
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400 /);
    expect(raw).toContain('{"success":false,"error":{"code":"VALIDATION_ERROR"');
    expect(raw.toLowerCase()).toContain("x-request-id:");
  });

  it("stop() lets in-flight requests finish, closes idle keep-alive sockets, refuses new connections", async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const { s, url } = await start(async (req) => {
      if (req.path === "/slow") await gate;
      return { status: 200, body: '{"ok":true}' };
    });
    const agent = new Agent({ keepAlive: true });
    const get = (path: string) =>
      new Promise<{ status: number; connection: string | undefined; body: string }>((resolve, reject) => {
        const r = httpRequest(`${url}/api${path}`, { agent }, (res) => {
          let body = "";
          res.on("data", (d) => (body += d));
          res.on("end", () => resolve({ status: res.statusCode!, connection: res.headers["connection"], body }));
        });
        r.on("error", reject);
        r.end();
      });
    // An idle keep-alive socket and a busy one.
    expect((await get("/fast")).status).toBe(200);
    const slow = get("/slow");
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    let stopped = false;
    const stopping = s.stop().then(() => (stopped = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(stopped).toBe(false);
    await expect(fetch(`${url}/healthz`)).rejects.toThrow();
    release();
    const res = await slow;
    expect(res).toMatchObject({ status: 200, connection: "close", body: '{"ok":true}' });
    await stopping;
    expect(Date.now() - t0).toBeLessThan(1500);
    agent.destroy();
  });

  it("stop() cuts requests still running after the shutdown timeout", async () => {
    const { s, url } = await start(() => new Promise<Answer>(() => undefined), 300);
    const pending = fetch(`${url}/api/hang`).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 50));
    const t0 = Date.now();
    await s.stop();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
    expect(Date.now() - t0).toBeLessThan(1500);
    expect(await pending).toBeInstanceOf(Error);
  });

  describe("413 PAYLOAD_TOO_LARGE reaches every common client before the connection closes", () => {
    const MiB = 1024 * 1024;
    // As the pipeline does: the body is read only after auth and the rate limit.
    const later = async (req: GatewayRequest): Promise<Answer> => {
      await new Promise((r) => setTimeout(r, 10));
      return echoBody(req);
    };

    /** Sends a request over a raw socket and returns everything read until the server closes. */
    function raw(port: number, head: string, body: (sock: Socket) => Promise<void>): Promise<string> {
      return new Promise((resolve) => {
        let out = "";
        const sock = connect(port, "127.0.0.1", () => {
          sock.write(head);
          void body(sock).catch(() => undefined);
        });
        sock.on("data", (d: Buffer) => (out += d.toString("latin1")));
        sock.on("error", (e: NodeJS.ErrnoException) => (out += `<${e.code}>`));
        sock.setTimeout(15_000, () => sock.destroy());
        sock.on("close", () => resolve(out));
      });
    }
    /** Writes `size` bytes as fast as the server takes them (each write waits for the previous one). */
    const paced = (size: number, chunked = false) => async (sock: Socket) => {
      const piece = Buffer.alloc(64 * 1024, "x");
      for (let sent = 0; sent < size; sent += piece.length) {
        const data = chunked ? Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from("\r\n")]) : piece;
        await new Promise<void>((resolve, reject) => sock.write(data, (err) => (err ? reject(err) : resolve())));
      }
      if (chunked) sock.write("0\r\n\r\n");
    };
    const post = (extra: string) => `POST /api/customers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n${extra}\r\n`;

    it("raw sockets: declared, paced past the old discard limit, chunked, and Expect: 100-continue", async () => {
      const { url } = await start(later);
      const port = Number(new URL(url).port);
      const seen: string[] = [];
      for (let i = 0; i < 10; i++) {
        seen.push(await raw(port, post(`Content-Length: ${2 * MiB}\r\n`), async (sock) => void sock.write(Buffer.alloc(2 * MiB, "x"))));
        seen.push(await raw(port, post(`Content-Length: ${20 * MiB}\r\n`), paced(20 * MiB)));
        seen.push(await raw(port, post("Transfer-Encoding: chunked\r\n"), paced(2 * MiB, true)));
      }
      for (const out of seen) {
        expect(out).toMatch(/^HTTP\/1\.1 413 /);
        expect(out).toContain('{"success":false,"error":{"code":"PAYLOAD_TOO_LARGE"}}');
        expect(out.toLowerCase()).toContain("connection: close");
      }
      // Expect: 100-continue with a declared size over the limit: 413 at once, no "100 Continue", no body sent.
      const expecting = await raw(port, post(`Content-Length: ${2 * MiB}\r\nExpect: 100-continue\r\n`), async () => undefined);
      expect(expecting).toMatch(/^HTTP\/1\.1 413 /);
      expect(expecting).not.toContain("100 Continue");
      // Within the limit, the client gets its "100 Continue" and the body is read.
      const small = await raw(port, post(`Content-Length: 2\r\nExpect: 100-continue\r\nConnection: close\r\n`), async (sock) => {
        await new Promise((r) => setTimeout(r, 50));
        sock.write("{}");
      });
      expect(small).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
      expect(small).toContain('"bytes":2');
    });

    it("fetch: bodies of 2 and 20 MiB", async () => {
      const { url } = await start(later);
      for (let i = 0; i < 10; i++) {
        for (const size of [2 * MiB, 20 * MiB]) {
          const res = await fetch(`${url}/api/customers`, { method: "POST", body: "y".repeat(size), headers: { "content-type": "application/json" } });
          expect(res.status).toBe(413);
          expect(await res.json()).toEqual({ success: false, error: { code: "PAYLOAD_TOO_LARGE" } });
        }
      }
    });

    it("curl: with and without Expect: 100-continue", async () => {
      const { url } = await start(later);
      const dir = mkdtempSync(join(tmpdir(), "linquid-413-"));
      try {
        const file = join(dir, "body.json");
        writeFileSync(file, Buffer.alloc(20 * MiB, "z"));
        const curl = (extra: string[]) =>
          new Promise<string>((resolve) => {
            const c = spawn("curl", ["-s", "-m", "10", "-o", "/dev/null", "-w", "%{http_code}", "-H", "content-type: application/json", "--data-binary", `@${file}`, ...extra, `${url}/api/customers`]);
            let out = "";
            c.stdout.on("data", (d: Buffer) => (out += d.toString()));
            c.on("close", () => resolve(out));
          });
        for (let i = 0; i < 5; i++) {
          expect(await curl([])).toBe("413");
          expect(await curl(["-H", "Expect:"])).toBe("413");
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
