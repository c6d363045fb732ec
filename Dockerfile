# GregorMQ broker and gregorctl on a distroless base, run as a non-root user.
#
# The image holds the `deno` runtime plus the sources with every dependency cached at build time
# (DENO_DIR), run with --cached-only: nothing is fetched when a container starts. It does not hold a
# `deno compile` binary because `deno compile` downloads its `denort` runtime from Deno's download
# host, which our build machines cannot reach; docs/operations.md ("Docker") says how to build one where
# it can (DENORT_BIN). Both base images are named in full so `--pull=never` finds local stand-ins
# (deploy/docker/build-local.sh makes them where no registry can be reached).
#
#   docker build -t gregormq .
#   docker run -p 7070:7070 -p 7071:7071 -v gregor-data:/data gregormq

ARG DENO_VERSION=2.9.6

FROM docker.io/denoland/deno:bin-${DENO_VERSION} AS deno

# The build stage caches the dependencies; it runs as root so it may write /deno-dir and /app.
FROM gcr.io/distroless/cc-debian12:latest AS build
COPY --from=deno /deno /usr/local/bin/deno
# A container's port is public only once published; like Redis's image, the image lets the broker
# serve plaintext on 0.0.0.0. Set GREGOR_ALLOW_INSECURE_PUBLIC=false with GREGOR_TLS_CERT and
# GREGOR_TLS_KEY (docs/security.md) to require TLS.
ENV DENO_DIR=/deno-dir \
    DENO_NO_UPDATE_CHECK=1
# Behind a TLS-intercepting proxy whose CA is in the base image's store, build with
# `--build-arg DENO_TLS_CA_STORE=system` (Deno trusts only its own Mozilla list by default).
ARG DENO_TLS_CA_STORE
WORKDIR /app
COPY deno.json deno.lock ./
COPY src/ src/
COPY cli/ cli/
RUN ["deno", "cache", "--frozen", "cli/broker.ts", "cli/gregorctl.ts", "cli/healthcheck.ts"]
# Loading every module once fills the transpile cache, so a container starts without compiling.
RUN ["deno", "run", "--cached-only", "--allow-read", "--allow-env", "cli/broker.ts", "--help"]
RUN ["deno", "run", "--cached-only", "--allow-read", "--allow-env", "cli/gregorctl.ts", "--help"]
# An empty directory for the data volume, copied below with the non-root user as its owner (the
# base has no shell, so Deno makes it).
RUN ["deno", "eval", "Deno.mkdirSync('/data')"]

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=deno /deno /usr/local/bin/deno
COPY --from=build /deno-dir /deno-dir
COPY --from=build /app /app
COPY --from=build --chown=65532:65532 /data /data
# `gregorctl` on the PATH: a script run by deno. A shebang line passes one argument, so it grants
# every permission (the CLI reads files, the environment and the network anyway).
COPY deploy/docker/gregorctl /usr/local/bin/gregorctl
# A container's port is public only once published; like Redis's image, the image lets the broker
# serve plaintext on 0.0.0.0. Set GREGOR_ALLOW_INSECURE_PUBLIC=false with GREGOR_TLS_CERT and
# GREGOR_TLS_KEY (docs/security.md) to require TLS.
ENV DENO_DIR=/deno-dir \
    DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1 \
    GREGOR_HOST=0.0.0.0 \
    GREGOR_ALLOW_INSECURE_PUBLIC=true \
    GREGOR_METRICS_PORT=7071 \
    GREGOR_DATA_DIR=/data
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]
# clients, metrics and health over HTTP, cluster gossip and replication
EXPOSE 7070 7071 7072
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["/usr/local/bin/deno", "run", "--cached-only", "--allow-net", "--allow-env", "/app/cli/healthcheck.ts"]
ENTRYPOINT ["/usr/local/bin/deno", "run", "--cached-only", "--allow-net", "--allow-read", "--allow-write", "--allow-env", "--allow-ffi=/lib/x86_64-linux-gnu/libc.so.6,/lib/aarch64-linux-gnu/libc.so.6", "/app/cli/broker.ts"]
