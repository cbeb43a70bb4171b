# limaoim in a container: the README's build (Debian 12 packages, meson,
# release), run as a non-root user with the data directory as a volume.
#
#   docker build -t limaoim .
#   docker run -d --name limaoim -p 6666:6666 -p 2122:2122 -v limaoim-data:/var/lib/limaoim limaoim
#
# With Docker's default seccomp profile (Docker 25 and later, containerd,
# Kubernetes' RuntimeDefault) io_uring is blocked: the server says so once
# and runs on epoll (--io-backend auto). For io_uring inside the container,
# run with tools/container/seccomp-io_uring.json (README "Containers").
# The API listens on the container's loopback unless LIMAOIM_HTTP_ADDR and a
# secret are given (tools/container/compose.yaml does both).

FROM debian:12 AS build
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential meson ninja-build pkg-config python3 ca-certificates \
      liburing-dev libmimalloc-dev libssl-dev doctest-dev libtomlplusplus-dev libcli11-dev \
      nlohmann-json3-dev librocksdb-dev libhttp-parser-dev zlib1g-dev libcurl4-openssl-dev \
      libhiredis-dev nodejs npm \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The demo page's vendor files come from the JavaScript client's lockfile
# (its runtime dependencies only: the browser tests' are not needed here).
COPY clients/js/package.json clients/js/package-lock.json clients/js/
RUN cd clients/js && npm ci --omit=dev --no-audit --no-fund --loglevel=error
COPY . .
RUN meson setup build-release --buildtype=release \
 && ninja -C build-release limaoim limaoim-stat

# Redis for tools/container/compose.yaml, from Debian 12's package (7.0) like
# everything else here: `docker build --target redis`.
FROM debian:12-slim AS redis
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/* \
 && install -d -m 0700 -o redis -g redis /data
USER redis
WORKDIR /data
VOLUME ["/data"]
EXPOSE 6379

# The server (the default target: the last stage).
FROM debian:12-slim
ARG DEBIAN_FRONTEND=noninteractive
# The libraries the two binaries link, and curl for the health check.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      liburing2 libmimalloc2.0 libssl3 librocksdb7.8 libhttp-parser2.9 libcurl4 libhiredis0.14 \
      libtomlplusplus3 ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/limaoim --shell /usr/sbin/nologin limaoim \
 && install -d -m 0700 -o limaoim -g limaoim /var/lib/limaoim
COPY --from=build /src/build-release/limaoim /src/build-release/limaoim-stat /usr/local/bin/
COPY limaoim.example.toml /usr/share/doc/limaoim/
USER limaoim
WORKDIR /var/lib/limaoim
VOLUME ["/var/lib/limaoim"]
ENV LIMAOIM_DATA_DIR=/var/lib/limaoim/data
# 6666 LiMaoIM over TCP, 2122 WebSocket, 1516 the HTTP API (loopback by default).
EXPOSE 6666 2122 1516
# SIGTERM (docker stop): DISCONNECT every client, flush, exit 0 within 3 s;
# docker stop waits 10 s before SIGKILL.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s \
  CMD curl -fsS -o /dev/null -H "Authorization: Bearer $(cat "${LIMAOIM_HTTP_SECRET_FILE:-/dev/null}" 2>/dev/null)" \
      "http://127.0.0.1:1516/health" || exit 1
ENTRYPOINT ["limaoim"]

