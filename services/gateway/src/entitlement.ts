/**
 * Plan gate: a route naming an entitlement (e.g. "revenue-tracking") answers 403
 * FEATURE_NOT_AVAILABLE to workspaces whose plan lacks it.
 */
import type { Step } from "./context.js";
import { HttpError } from "./http-error.js";

export function createEntitlementPolicy(): Step {
  return async (req, next) => {
    const needed = req.route?.route.policy.entitlement;
    if (needed === undefined || req.principal === undefined) throw new Error("entitlement policy ran before routing or auth");
    if (needed !== "" && !req.principal.entitlements.has(needed)) {
      throw new HttpError(403, "FEATURE_NOT_AVAILABLE", `this workspace's plan does not include ${needed}`);
    }
    return next();
  };
}
