# The image deploy/kubernetes/deployment.yaml runs:
#   docker build -t registry.example.com/sealgate:0.1.0 .
# Built as the tests and benchmarks build it (the locked dependencies, the
# release profile); run as a non-root user on a distroless base with no
# shell. gateway/tests/deploy.rs lints this file and checks it against the
# Deployment.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p sealgate --bin sealgate

# glibc and libgcc, CA certificates, nothing else; user 65532 (nonroot).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/sealgate /usr/local/bin/sealgate
USER 65532:65532
# HTTPS S3 listener, admin listener (metrics, health).
EXPOSE 8443 9090
ENTRYPOINT ["/usr/local/bin/sealgate"]
CMD ["run", "--config", "/etc/sealgate/config/sealgate.yaml"]
