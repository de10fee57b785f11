#!/usr/bin/env bash
# A build step that runs beside the next ones: the model-server suite waits most of its time on a simulated device,
# and the model server's Python environment on the network, so the build goes on with work for the CPU meanwhile.
#
#   build-tools/background.sh start NAME COMMAND...   starts COMMAND (through bash -c) detached from the step, its
#                                                     output in .build/NAME.log; a job of that name still running
#                                                     from an earlier build is ended first
#   build-tools/background.sh wait NAME               waits for it, prints its output and how long it took, and exits
#                                                     with its status (1 when no such job was started)
#
# A started job is ended by `wait`, never left behind unseen: a build that stops between the two (a failed step)
# leaves a job that ends on its own, and the next `start` of that name ends it. Jobs run with a time limit
# (BACKGROUND_TIMEOUT seconds, default 1800) so that nothing can hang CI.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dir="$root/.build"
mkdir -p "$dir"
action="${1:?start or wait}"
name="${2:?a job name}"
shift 2
log="$dir/$name.log" rc="$dir/$name.rc" pid="$dir/$name.pid" began="$dir/$name.began"

end_job() {
  # The whole session the job started (timeout(1) puts its command in a process group of its own): SIGINT first, on
  # which pytest tears its fixtures down (and so stops the model servers it started), then SIGKILL.
  [ -s "$pid" ] || return 0
  local sid; sid="$(cat "$pid")"
  pkill -INT -s "$sid" 2>/dev/null || return 0
  for _ in $(seq 30); do pgrep -s "$sid" >/dev/null || return 0; sleep 1; done
  pkill -KILL -s "$sid" 2>/dev/null || true
}

case "$action" in
  start)
    [ $# -gt 0 ] || { echo "background.sh start $name: no command" >&2; exit 2; }
    end_job
    rm -f "$rc" "$pid"
    date +%s > "$began"
    # setsid: a process group of its own (ended as one); every descriptor redirected, so the step that starts it
    # returns at once (projen waits for the step's output to close).
    setsid bash -c 'timeout "${BACKGROUND_TIMEOUT:-1800}" bash -c "$1"; echo $? > "$2"' bash "$*" "$rc" \
      </dev/null >"$log" 2>&1 &
    echo $! > "$pid"
    echo "started in the background: $name (output: ${log#"$root"/})"
    ;;
  wait)
    [ -s "$pid" ] || { echo "background.sh wait $name: no job of that name was started" >&2; exit 1; }
    while [ ! -s "$rc" ]; do
      if ! kill -0 "$(cat "$pid")" 2>/dev/null && [ ! -s "$rc" ]; then
        sleep 1  # the status is written just before the job's shell exits
        [ -s "$rc" ] || { echo "background.sh wait $name: the job ended without a status" >&2; cat "$log"; exit 1; }
      fi
      sleep 1
    done
    status="$(cat "$rc")"
    echo "----- $name (background, $(( $(date +%s) - $(cat "$began") )) s since it started, exit $status) -----"
    sed "s/^/  | /" "$log"
    echo "----- end of $name -----"
    rm -f "$pid"
    exit "$status"
    ;;
  *)
    echo "background.sh: unknown action $action (start or wait)" >&2
    exit 2
    ;;
esac
