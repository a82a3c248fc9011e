# One image for every part of the call center. The build stage compiles with
# CMake from Debian 12's packages; the runtime stage has only the shared
# libraries. Each part runs this image with its own command (docker-compose.yml).
#
# Adding a service: add its target to the build line and one COPY line below
# (tests/compose_test.sh checks that every services/<name> is copied).

# ---- build ----------------------------------------------------------------
FROM debian:bookworm-slim AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        build-essential cmake pkg-config \
        libzmq3-dev libczmq-dev libprotobuf-c-dev protobuf-c-compiler \
        libpq-dev libhiredis-dev libuv1-dev libcivetweb-dev libjansson-dev libyaml-dev libyajl-dev \
        libre-dev libspandsp-dev libsndfile1-dev libespeak-ng-dev libsamplerate0-dev \
        libsodium-dev libcurl4-openssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Only the shipped programs are built (tests and benchmarks stay out).
RUN cmake -S . -B /build -DCMAKE_BUILD_TYPE=Release \
        -DCC_DEFAULT_CONFIG=/etc/callcenter/callcenter.env \
    && cmake --build /build -j"$(nproc)" \
        --target forwarder acd acdctl gateway order-sync order-syncctl cc-migrate
# Migrations, in the layout cc-migrate --root expects: deploy/sql and
# services/<name>/sql. Every service's sql/ folder is picked up on its own.
RUN set -e; mkdir -p /out/share/deploy; cp -r deploy/sql /out/share/deploy/; \
    for d in services/*/sql; do \
        [ -d "$d" ] || continue; \
        mkdir -p "/out/share/${d%/sql}"; cp -r "$d" "/out/share/$d"; \
    done

# ---- runtime --------------------------------------------------------------
FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends \
        libzmq5 libczmq4 libprotobuf-c1 libpq5 libhiredis0.14 libuv1 libcivetweb1 \
        libjansson4 libyaml-0-2 libyajl2 libsodium23 libre0 libspandsp2 libsndfile1 libespeak-ng1 espeak-ng-data libsamplerate0 \
        libcurl4 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --user-group --home-dir /var/lib/callcenter \
        --no-create-home --shell /usr/sbin/nologin callcenter \
    && install -d -o callcenter -g callcenter /var/lib/callcenter /var/lib/callcenter/recordings /var/lib/callcenter/tts

# Programs: one line per service binary, plus the tools.
COPY --from=build /build/services/forwarder/forwarder /usr/local/bin/
COPY --from=build /build/services/acd/acd /usr/local/bin/
COPY --from=build /build/services/acd/acdctl /usr/local/bin/
COPY --from=build /build/services/gateway/gateway /usr/local/bin/
COPY --from=build /build/services/order-sync/order-sync /usr/local/bin/
COPY --from=build /build/services/order-sync/order-syncctl /usr/local/bin/
COPY --from=build /build/tools/cc-migrate /usr/local/bin/

# Defaults file, prompts and the other deploy/ files; migrations.
COPY deploy/ /etc/callcenter/
COPY --from=build /out/share/ /usr/share/callcenter/

ENV CC_CONFIG_FILE=/etc/callcenter/callcenter.env \
    CC_SOURCE_DIR=/usr/share/callcenter \
    CC_BIND_HOST=0.0.0.0
WORKDIR /var/lib/callcenter
USER callcenter
CMD ["forwarder"]
