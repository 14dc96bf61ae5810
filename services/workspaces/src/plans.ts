/**
 * The plan catalogue: what each plan is entitled to. Request budgets per plan are
 * configuration (RATE_LIMIT_<PLAN>), and a workspace may override its own.
 */
import type { Plan } from "@linquid/mesh";

export const PLANS: readonly Plan[] = ["starter", "pro", "enterprise"];

/** Revenue tracking covers every /customers/* and /track/* route. */
export const REVENUE_TRACKING = "revenue-tracking";

const entitlements: Record<Plan, readonly string[]> = {
  starter: [],
  pro: [REVENUE_TRACKING],
  enterprise: [REVENUE_TRACKING],
};

export function isPlan(value: string): value is Plan {
  return (PLANS as readonly string[]).includes(value);
}

export function entitlementsOf(plan: Plan): readonly string[] {
  return entitlements[plan];
}

/** Every scope a key may carry. `links:write` grants links:create, links:update and links:delete. */
export const SCOPES = ["links:read", "links:create", "links:update", "links:delete", "links:write", "analytics:read", "events:write"] as const;

export function isScope(value: string): boolean {
  return (SCOPES as readonly string[]).includes(value);
}
