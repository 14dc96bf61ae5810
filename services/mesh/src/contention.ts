/**
 * Retrying a conditional write that lost to a concurrent one: a short, jittered, growing pause
 * between attempts and a time limit, after which the caller is told to retry (UNAVAILABLE:
 * transient by nature, so "retry shortly" rather than ABORTED).
 */
import { setTimeout as sleep } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Waits before attempt `attempt + 1` (about 2 ms doubling up to 50 ms, ±50 %); throws
 * UNAVAILABLE with `message` once `deadline` (epoch ms) has passed.
 */
export async function pauseBeforeRetry(attempt: number, deadline: number, message: string): Promise<void> {
  if (Date.now() >= deadline) throw new ConnectError(message, Code.Unavailable);
  await sleep(Math.min(50, 2 * 2 ** Math.min(attempt, 5)) * (0.5 + Math.random()));
}
