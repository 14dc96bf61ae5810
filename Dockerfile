# syntax=docker/dockerfile:1
# One image runs every plugin of the mesh; MESH_PLUGINS picks which ones a container runs
# (see deploy/README.md). Production points MONGODB_URI and REDIS_URL at real backends, so
# neither FerretDB nor redis-server is in the image. `npm run check:image` performs these
# steps without a container engine.

FROM node:24-bookworm-slim AS build
WORKDIR /app
# Manifests first: the npm layer is rebuilt only when dependencies change. npm ci needs each
# workspace's package.json to link @linquid/* into node_modules.
COPY package.json package-lock.json .npmrc ./
COPY services/analytics/package.json services/analytics/
COPY services/client/package.json services/client/
COPY services/contracts/package.json services/contracts/
COPY services/customers/package.json services/customers/
COPY services/gateway/package.json services/gateway/
COPY services/mesh/package.json services/mesh/
COPY services/workspaces/package.json services/workspaces/
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json tsconfig.build.json ./
COPY scripts/build.mjs scripts/
COPY services/ services/
# TypeScript compiled to dist/ (generated code included), then production dependencies only.
RUN npm run build && cd dist && npm ci --omit=dev --no-audit --no-fund --loglevel=error

FROM node:24-bookworm-slim
WORKDIR /app
# Files stay owned by root: the app user can read them, not change them.
COPY --from=build /app/dist /app
ENV BIND_HOST=0.0.0.0 \
    NODE_ENV=production
# The base image's "node" user, numeric so Kubernetes can check runAsNonRoot.
USER 1000:1000
EXPOSE 8090 8080
# The base image's plain Node runs the compiled mesh.
CMD ["node", "services/mesh/src/main.js"]
