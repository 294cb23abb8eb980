#!/bin/sh
# Reads {"path": "..."} on stdin and returns the file's first line, or the
# error that reading it gave (then exits 1).
set -u
input=$(cat)
path=$(printf '%s' "$input" | sed -n 's/.*"path"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p')
escape() { printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g' | tr -d '\n\r\t'; }
if line=$(head -n 1 -- "$path" 2>/tmp/err); then
    printf '{"path": "%s", "ok": true, "first_line": "%s"}\n' "$(escape "$path")" "$(escape "$line")" >&"$CORDON_RESULT_FD"
else
    cat /tmp/err >&2
    printf '{"path": "%s", "ok": false, "error": "%s"}\n' "$(escape "$path")" "$(escape "$(cat /tmp/err)")" >&"$CORDON_RESULT_FD"
    exit 1
fi
