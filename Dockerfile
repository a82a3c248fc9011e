# One image for every part of the call center: build stage, then a slim
# runtime with only the shared libraries. Each service runs the same image
# with its own command (see docker-compose.yml).
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libzmq3-dev libczmq-dev libprotobuf-c-dev protobuf-c-compiler \
        libpq-dev libhiredis-dev libuv1-dev libcivetweb-dev libjansson-dev libyaml-dev \
        libre-dev libspandsp-dev libsndfile1-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
        -DCC_DEFAULT_CONFIG=/etc/callcenter/callcenter.env \
    && cmake --build /build -j"$(nproc)" --target forwarder acd acdctl gateway cc-migrate

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends \
        libzmq5 libczmq4 libprotobuf-c1 libpq5 libhiredis0.14 libuv1 libcivetweb1 \
        libjansson4 libyaml-0-2 libre0 libspandsp2 libsndfile1 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /nonexistent --shell /usr/sbin/nologin callcenter
COPY --from=build /build/services/forwarder/forwarder /build/services/acd/acd \
                  /build/services/acd/acdctl /build/services/gateway/gateway \
                  /build/tools/cc-migrate /usr/local/bin/
COPY deploy/ /etc/callcenter/
# Migrations keep the source layout: cc-migrate --root /usr/share/callcenter
COPY deploy/sql/ /usr/share/callcenter/deploy/sql/
COPY services/acd/sql/ /usr/share/callcenter/services/acd/sql/
COPY services/gateway/sql/ /usr/share/callcenter/services/gateway/sql/
ENV CC_CONFIG_FILE=/etc/callcenter/callcenter.env \
    CC_SOURCE_DIR=/usr/share/callcenter \
    CC_BIND_HOST=0.0.0.0
USER callcenter
CMD ["forwarder"]
