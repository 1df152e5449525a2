#!/usr/bin/env bash
# Usage: infra/local/with-stack.sh COMMAND [ARGS...]
# Runs COMMAND with the local stack up. If the stack was not up, starts it and stops it again
# afterwards whatever COMMAND's outcome (also on ^C), keeping COMMAND's exit status. A stack
# that was already up (`make stack-up`) is used and left running.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
stack=(python3 "$here/stack.py")

if "${stack[@]}" status >/dev/null 2>&1; then
  echo "stack: already up; leaving it running" >&2
else
  "${stack[@]}" up || exit $?
  trap '"${stack[@]}" down' EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
fi

"$@"
exit $?
