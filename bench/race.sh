# Sourced by bench/relay.sh and bench/tls.sh: the one way a race records a run.
# Needs HUBCAT (the hubcat binary) and RESULTS (a JSON-lines file) set by the caller.

# install_missing PACKAGE...: apt-get installs the Debian packages whose command is missing
# (each package's command has its name).
install_missing() {
  local need=() package
  for package in "$@"; do
    command -v "$package" >/dev/null || need+=("$package")
  done
  if [ ${#need[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null
  fi
}

# run NAME CASE SCENARIO COMMAND ARGS...: one bench run, its JSON tagged with server and case
# (null when the run failed); a dot on stderr for progress.
run() {
  local name=$1 case=$2 scenario=$3 command=$4 out
  shift 4
  if out=$("$HUBCAT" bench "$scenario" --json --time-limit 180s --spawn "$command" "$@" 2>/dev/null); then
    printf '{"server":"%s","case":"%s","result":%s}\n' "$name" "$case" "$out" >> "$RESULTS"
  else
    printf '{"server":"%s","case":"%s","result":null}\n' "$name" "$case" >> "$RESULTS"
  fi
  printf '.' >&2
}
