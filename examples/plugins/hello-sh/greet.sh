#!/bin/sh
# Reads {"name": "..."} on stdin and writes one JSON object to the file
# descriptor named in $CORDON_RESULT_FD. Nothing here knows about cordon
# beyond those two variables.
set -eu
input=$(cat)
name=$(printf '%s' "$input" | sed -n 's/.*"name"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p')
[ -n "$name" ] || name=World
echo "greeting $name" >&2
printf 'Hello, %s!\n' "$name" > "$CORDON_ARTIFACTS/card.txt"
printf '{"greeting": "Hello, %s!", "uid": %s, "pid": %s}\n' "$name" "$(id -u)" "$$" >&"$CORDON_RESULT_FD"
