/**
 * The access line and the RED metrics of every REST request, the second policy of the chain:
 * it runs inside the request's SERVER span (request-id.ts) and around everything else, so it
 * sees the final answer — errors already mapped to their envelope, the route the router found,
 * the workspace auth resolved, the X-Cache the cache policy set.
 *
 * The line carries the route template (never the raw path, which may hold an external id),
 * method, status, error code, duration, request id, workspace id, trace and span ids; nothing
 * the caller sent beyond those. Metrics are labelled by route template, method, status and error
 * code only (bounded sets); the duration histogram keeps the trace id of a recent request per
 * bucket as an exemplar.
 */
import { trace } from "@opentelemetry/api";
import { cacheLookups, httpDuration, httpRequests, rateLimitRefusals, secondsSince, type Logger } from "@linquid/mesh";
import type { Answer, Step } from "./context.js";

/** The route label of a request no route matched (404, 405): raw paths never become labels. */
export const UNMATCHED = "unmatched";

export function createObservePolicy(logger: Logger): Step {
  return async (req, next) => {
    const started = performance.now();
    let answer: Answer | undefined;
    try {
      answer = await next();
      return answer;
    } finally {
      const seconds = secondsSince(started);
      // Only a failure of the error map itself gets here without an answer; the pipeline answers 500.
      const status = answer?.status ?? 500;
      const code = answer === undefined ? "INTERNAL_ERROR" : (answer.code ?? "");
      const route = req.route?.route.template ?? req.ownRoute ?? UNMATCHED;
      const method = req.method;
      const sc = trace.getActiveSpan()?.spanContext();
      const traced = sc !== undefined && trace.isSpanContextValid(sc);

      httpRequests.inc({ route, method, status, code });
      // (prom-client's types want exemplar labels named like the metric's own; OpenMetrics allows any.)
      const exemplar = traced ? { exemplarLabels: { trace_id: sc.traceId } as Record<string, string> as { route: string } } : {};
      httpDuration.observe({ labels: { route, method }, value: seconds, ...exemplar });
      const cache = req.responseHeaders.get("x-cache");
      if (cache === "HIT") cacheLookups.inc({ route, result: "hit" });
      else if (cache === "MISS") cacheLookups.inc({ route, result: "miss" });
      if (status === 429) rateLimitRefusals.inc({ route });

      const workspaceId = req.principal?.workspaceId;
      logger.info("request", {
        method,
        route: route === UNMATCHED ? null : route,
        status,
        ...(code !== "" ? { code } : {}),
        durationMs: Math.round(seconds * 10_000) / 10,
        requestId: req.requestId,
        ...(workspaceId !== undefined ? { workspaceId } : {}),
        ...(traced ? { traceId: sc.traceId, spanId: sc.spanId } : {}),
      });
    }
  };
}
