# syntax=docker/dockerfile:1
# One image runs every plugin of the mesh; MESH_PLUGINS picks which ones a container runs
# (see deploy/README.md). Production points MONGODB_URI and REDIS_URL at real backends, so
# neither FerretDB nor redis-server is in the image.

FROM node:24-bookworm-slim AS build
WORKDIR /app
# Manifests first: the npm layer is rebuilt only when dependencies change. npm ci needs each
# workspace's package.json to link @linquid/* into node_modules. Dev dependencies stay: the
# pinned Node ("node") and tsx, which runs the TypeScript sources, are among them.
COPY package.json package-lock.json .npmrc ./
COPY services/analytics/package.json services/analytics/
COPY services/contracts/package.json services/contracts/
COPY services/customers/package.json services/customers/
COPY services/gateway/package.json services/gateway/
COPY services/mesh/package.json services/mesh/
COPY services/workspaces/package.json services/workspaces/
RUN npm ci --no-audit --no-fund --loglevel=error
COPY tsconfig.json ./
COPY services/ services/

FROM node:24-bookworm-slim
WORKDIR /app
# Files stay owned by root: the app user can read them, not change them.
COPY --from=build /app /app
# The Node pinned in package.json, not the base image's, runs the mesh (as for `npm start`).
ENV PATH=/app/node_modules/.bin:$PATH \
    BIND_HOST=0.0.0.0
# The base image's "node" user, numeric so Kubernetes can check runAsNonRoot.
USER 1000:1000
EXPOSE 8090 8080
CMD ["/app/node_modules/.bin/node", "--import", "tsx", "services/mesh/src/main.ts"]
