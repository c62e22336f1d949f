# syntax=docker/dockerfile:1
#
# sfb-matrix-bridge container image.
#
#   docker build -t sfb-matrix-bridge .
#   docker run --rm -v sfb-data:/data sfb-matrix-bridge   # 1st run: writes /data/config.yaml
#   (edit config.yaml)
#   docker run --rm -v sfb-data:/data sfb-matrix-bridge   # 2nd run: writes /data/registration.yaml
#   (register it with the homeserver)
#   docker run -d -v sfb-data:/data -p 29340:29340 sfb-matrix-bridge
#
# See docs/operator-guide.md.

FROM golang:1.26-bookworm AS build
WORKDIR /src
# mattn/go-sqlite3 (the embedded SQLite database) needs cgo.
ENV CGO_ENABLED=1
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
# .git is not in the build context: pass the version from outside, e.g.
#   docker build --build-arg COMMIT=$(git rev-parse HEAD) --build-arg TAG=$(git describe --tags) .
ARG COMMIT=unknown
ARG TAG=
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -tags goolm \
      -ldflags "-s -w -X main.Commit=${COMMIT} -X main.Tag=${TAG} -X main.BuildTime=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
      -o /out/sfb-matrix-bridge ./cmd/sfb-matrix-bridge

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 1337 sfb \
 && useradd --system --uid 1337 --gid sfb --home-dir /data --shell /usr/sbin/nologin sfb \
 && mkdir /data && chown sfb:sfb /data
COPY --from=build /out/sfb-matrix-bridge /usr/local/bin/sfb-matrix-bridge
COPY scripts/docker-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER sfb:sfb
WORKDIR /data
VOLUME /data
# The appservice listener (appservice.port in config.yaml).
EXPOSE 29340
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
