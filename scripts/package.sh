#!/usr/bin/env bash
# Builds the Debian package from the committed Cargo.lock: the production binary (no simulator;
# cluster mode on, which needs protoc: Debian's protobuf-compiler),
# its man page and shell completions generated from the CLI's own definitions, then cargo deb.
# Extra arguments go to cargo deb. Needs cargo-deb (cargo install cargo-deb).
set -euo pipefail
cd "$(dirname "$0")/.."
# The dist profile (Cargo.toml) optimises the whole program at once: a smaller binary, and a
# smaller resident daemon, for a longer build. It leaves target/release alone.
cargo build --profile dist --locked --no-default-features --features cluster --bin kalshi-riskd
bin=target/dist/kalshi-riskd
mkdir -p target/assets/completions
"$bin" man > target/assets/kalshi-riskd.1
gzip -9nf target/assets/kalshi-riskd.1
"$bin" completions bash > target/assets/completions/kalshi-riskd
"$bin" completions zsh > target/assets/completions/_kalshi-riskd
"$bin" completions fish > target/assets/completions/kalshi-riskd.fish
cargo deb --locked --no-build --profile dist "$@"
