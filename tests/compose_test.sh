#!/usr/bin/env bash
# compose_test: docker-compose.yml parses (Debian's docker-compose), and names
# every service binary the build makes, so the container layout keeps up.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(docker-compose -f "$root/docker-compose.yml" config) || { echo "compose_test: docker-compose config failed"; exit 1; }
for dir in "$root"/services/*/; do
  name=$(basename "$dir")
  grep -q "^  $name:" <<<"$out" || { echo "compose_test: service $name missing from docker-compose.yml"; exit 1; }
  grep -q "/build/services/$name/$name" "$root/Dockerfile" || { echo "compose_test: $name not copied by the Dockerfile"; exit 1; }
done
echo "compose_test: 1 passed, 0 failed"
