# Sourced by the measuring scripts (instructions-per-request.sh, alloc-per-request.sh) with
# CLUSTER=1: starts a Redis Cluster of three masters with a replica each on free loopback ports
# (in $work, PIDs added to the caller's `pids`), joins it with redis-cli, waits for
# cluster_state:ok, and sets `seed` to the first node's host:port.
start_cluster_nodes() {
  local nodes=() i p
  for i in 1 2 3 4 5 6; do
    p=$(port); mkdir -p "$work/node$i"
    redis-server --port "$p" --bind 127.0.0.1 --save '' --dir "$work/node$i" --cluster-enabled yes \
      --cluster-port "$(port)" >/dev/null & pids+=($!)
    nodes+=("127.0.0.1:$p")
  done
  sleep 1
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >/dev/null
  for _ in $(seq 100); do
    redis-cli -p "${nodes[0]#*:}" cluster info | grep -q cluster_state:ok && break; sleep 0.2
  done
  seed=${nodes[0]}
}

# The ambassador's arguments for listen port $1: the standalone master and replicas (MP, R1,
# R2), or with `seed` set the cluster, through a config file in $work.
ambassador_arguments() {
  arguments=(--listen 127.0.0.1:"$1" --master 127.0.0.1:"$MP" --replica 127.0.0.1:"$R1" --replica 127.0.0.1:"$R2")
  if [ -n "${seed:-}" ]; then
    printf 'listen: 127.0.0.1:%s\ndiscovery: cluster\ncluster_nodes: [%s]\n' "$1" "$seed" > "$work/cluster.yaml"
    arguments=(--config "$work/cluster.yaml")
  fi
}
