/**
 * The generated contracts, re-exported in one place: every service imports the
 * schemas and service descriptors of the others from here, never their code.
 * Regenerate with `npm run generate` after changing proto/.
 */
export * from "./gen/linquid/customers/v1/customers_pb.js";
export * from "./gen/linquid/analytics/v1/analytics_pb.js";
export * from "./gen/linquid/workspaces/v1/workspaces_pb.js";
export * from "./gen/linquid/workspaces/v1/idempotency_pb.js";
export * from "./gen/linquid/policy/v1/policy_pb.js";
export * from "./gen/linquid/type/v1/pagination_pb.js";
export * from "./gen/grpc/health/v1/health_pb.js";
// Server reflection: two versions of one protocol, with the same names, hence namespaces.
export * as reflectionV1 from "./gen/grpc/reflection/v1/reflection_pb.js";
export * as reflectionV1alpha from "./gen/grpc/reflection/v1alpha/reflection_pb.js";
export * from "./gen/google/api/annotations_pb.js";
export * from "./gen/google/api/http_pb.js";
export * from "./gen/google/rpc/error_details_pb.js";
// The contracts' comments by element name (scripts/protoc-gen-comments.mjs), for documentation.
export { CONTRACT_COMMENTS } from "./gen/comments.js";
