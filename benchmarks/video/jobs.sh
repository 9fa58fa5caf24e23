# Sourced by the benchmark scripts that run evaluations as background jobs.
waitall() {  # wait for every background job; fail if one failed (a bare wait does not)
  local rc=0 p
  for p in $(jobs -p); do wait "$p" || rc=$?; done
  return $rc
}
