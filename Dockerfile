# syntax=docker/dockerfile:1
# The tollgate ingress image. Multi-arch: `docker buildx build --platform linux/arm64,linux/amd64 .`
# builds natively for each platform (the Fargate task runs arm64).
#
# Layers: cargo-chef turns the workspace's manifests and lock file into a recipe, and `cook`
# compiles only the dependencies from it, so that layer is rebuilt only when Cargo.toml or
# Cargo.lock change, not on every source edit.
#
# The Rust version is rust-toolchain.toml's (the one place it is written): the base image only
# brings rustup, which installs that toolchain into the chef layer.

ARG CHEF_VERSION=0.1.78

FROM rust:1-slim-bookworm AS chef
ARG CHEF_VERSION
WORKDIR /src
COPY rust-toolchain.toml .
RUN rustup toolchain install --profile minimal \
    && cargo install cargo-chef --locked --version "${CHEF_VERSION}"

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS build
COPY --from=planner /src/recipe.json recipe.json
# The dependency layer.
# aws mode needs the AWS SDK adapters (the `aws` feature; `cargo run` leaves them out).
RUN cargo chef cook --release --locked --package tollgate-ingress --features aws --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --package tollgate-ingress --features aws --bin tollgate \
    && install -D -m 0755 target/release/tollgate /out/tollgate \
    && install -D -m 0644 routes.toml /out/routes.toml

# glibc, libgcc, CA certificates and a non-root user; no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/tollgate /usr/local/bin/tollgate
COPY --from=build /out/routes.toml /etc/tollgate/routes.toml
ENV TOLLGATE_LISTEN=0.0.0.0:8080 \
    TOLLGATE_ROUTES=/etc/tollgate/routes.toml \
    MIMALLOC_ARENA_EAGER_COMMIT=0
USER 65532:65532
EXPOSE 8080
# SIGTERM starts the drain (ECS sends it, then SIGKILL after the task's stop timeout).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tollgate"]
