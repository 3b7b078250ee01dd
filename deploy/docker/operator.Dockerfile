# shardbank operator image: `docker build -f deploy/docker/operator.Dockerfile -t shardbank/operator:0.1.0 .`
# Multi-stage; non-root; the Deployment runs it with a read-only root filesystem.
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY node ./node
COPY operator ./operator
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=build /src/package.json ./package.json
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/node ./dist/node
COPY --from=build /src/dist/operator ./dist/operator
RUN groupadd --gid 10001 shardbank && useradd --uid 10001 --gid 10001 --no-create-home --shell /usr/sbin/nologin shardbank
USER 10001:10001
EXPOSE 8081
ENTRYPOINT ["node", "dist/operator/main.js"]
