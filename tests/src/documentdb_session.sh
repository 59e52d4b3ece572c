# One DocumentDB for one test process (run by tests/src/documentdb.rs as `bash -c <this> session LAUNCHER PORT LOCK`).
#
# The test process holds the write end of our stdin and never writes: its end closes when the process
# ends, however it ends (panic, SIGKILL), and then this script stops the server it started. A Rust test
# binary has no exit hook, so the server's lifetime is tied to that pipe instead.
#
# First line on stdout: `URI <uri>` when this slot is ours and the server is up; `BUSY` when another test
# process holds the slot or something else listens on PORT or PORT+1 (the caller tries the next slot).
set -uo pipefail
launcher=$1 port=$2 lock=$3
# The caller may be gone by the time we answer; writing to the closed pipe must not end this script
# before it has stopped the server.
trap '' PIPE

# The slot's lock is held until the server is stopped, so a new process never starts on a slot that
# is still shutting down.
mkdir -p "$(dirname "$lock")"
exec 9>"$lock"
flock -n 9 || { echo BUSY; exit 0; }
for p in "$port" $((port + 1)); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo BUSY; exit 0; fi
done

# The servers get no copy of the lock (9>&-): only this script holds it.
# Keeps its data folder between processes (a fresh one costs an initdb, ~6 s); the harness drops the
# databases earlier test processes left behind.
if ! uri=$("$launcher" start "$port" </dev/null 9>&-); then
  "$launcher" stop "$port" </dev/null >/dev/null 2>&1 9>&-
  echo "FAILED $launcher start $port (its messages are above)"
  exit 1
fi
echo "URI $uri"

cat >/dev/null   # until the test process ends
"$launcher" stop "$port" </dev/null >/dev/null 9>&-
