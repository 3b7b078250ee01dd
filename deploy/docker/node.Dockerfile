# shardbank replica image: `docker build -f deploy/docker/node.Dockerfile -t shardbank/node:0.1.0 .`
# Multi-stage: compile TypeScript in a build stage, ship only dist/ and production
# dependencies. Runs as a non-root user; the StatefulSet mounts a read-only root
# filesystem with writable /var/lib/shardbank (PVC) and /tmp (emptyDir).
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY node ./node
COPY operator ./operator
# The replica never loads the Kubernetes client (the operator's; chaos --kubernetes uses plain
# HTTPS): it and what only it needs stay out of this image.
RUN npx tsc -p tsconfig.json \
    && npm uninstall --ignore-scripts --no-audit --no-fund @kubernetes/client-node \
    && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/node ./dist/node
RUN groupadd --gid 10001 shardbank && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin shardbank \
    && mkdir -p /var/lib/shardbank && chown 10001:10001 /var/lib/shardbank
USER 10001:10001
VOLUME ["/var/lib/shardbank"]
EXPOSE 50051 8080
ENTRYPOINT ["node", "dist/node/replica/main.js"]
