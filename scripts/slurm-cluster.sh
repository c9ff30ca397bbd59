#!/usr/bin/env bash
# slurm-cluster.sh up|down|status -- a throwaway one-node SLURM cluster WITH accounting, for tests and CI.
#
# Debian 12 (slurm 22.05) / Ubuntu 22.04+, run as root; no systemd needed (each daemon is started by hand).
# Why accounting: submitit reads job states through `sacct`; without slurmdbd it cannot see cancelled or
# killed jobs, so `sweep status` would show them as running forever.
#
# Environment:
#   SLURM_ACCOUNTING=1  slurmdbd + MariaDB so `sacct` works (default 1; 0 = no accounting)
#   SLURM_CPUS=N        advertise N CPUs instead of the real count (more concurrent array tasks)
#   SLURM_FAKE_GPUS=N   advertise N fake GPUs (gres backed by /dev/null-like nodes) to test gpus_per_node
#   SLURM_NO_APT=1      do not apt-get install (packages already there)
#
# Traps this script avoids (each cost someone an afternoon):
#   - slurmctld exits on its first start ("we have no TRES") when slurmdbd is not reachable yet:
#     we wait for slurmdbd's port 6819 before starting slurmctld.
#   - the node name is fixed (c1 at 127.0.0.1) and slurmd is started with -N, so nothing depends on
#     the container's hostname or DNS.
#   - containers have no usable cgroups: proctrack/linuxproc and task/none.
#   - slurmd ignores SIGTERM while it cannot register: `down` escalates to SIGKILL after 10 s.
#   - jobs still running at `down` leave slurmstepd orphans: `down` cancels every job first.
#   - a requeued job may not start before the old job's credential expires (AuthInfo cred_expire,
#     120 s by default); we lower it so requeue (preemption/timeout) tests take seconds, not minutes.
set -euo pipefail
ACCOUNTING=${SLURM_ACCOUNTING:-1}
FAKE_GPUS=${SLURM_FAKE_GPUS:-0}
NODE=c1
PARTITION=debug
RUN=/run/sweep-slurm      # pid files, fake GPU device nodes
DBPASS=sweepci

wait_for() { # wait_for SECONDS CMD... (each try capped at 5 s)
  local end=$((SECONDS + $1)); shift
  until timeout 5 "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || { echo "slurm-cluster: timed out waiting for: $*" >&2; return 1; }
    sleep 0.3
  done
}

install_packages() {
  [ "${SLURM_NO_APT:-0}" = 1 ] && return 0
  local pkgs="munge slurmctld slurmd slurm-client"
  [ "$ACCOUNTING" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  # skip apt entirely when everything is already installed (fast restarts)
  if dpkg-query -W -f='${Status}\n' $pkgs 2>/dev/null | grep -vq "install ok installed" \
     || [ "$(dpkg-query -W -f='${Status}\n' $pkgs 2>/dev/null | wc -l)" -lt "$(echo $pkgs | wc -w)" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
  fi
}

write_slurm_conf() {
  local hw mem gres="" acct="accounting_storage/none"
  hw=$(slurmd -C | head -1 | sed 's/^NodeName=[^ ]* //')    # CPUs=.. Boards=.. RealMemory=..
  hw=$(echo "$hw" | sed 's/ UpTime=.*//')
  mem=$(echo "$hw" | sed 's/.*RealMemory=\([0-9]*\).*/\1/')
  [ -n "${SLURM_CPUS:-}" ] && hw="CPUs=$SLURM_CPUS RealMemory=$mem"
  [ "$ACCOUNTING" = 1 ] && acct="accounting_storage/slurmdbd"
  : > /etc/slurm/gres.conf
  if [ "$FAKE_GPUS" -gt 0 ]; then
    gres="Gres=gpu:$FAKE_GPUS"
    for i in $(seq 0 $((FAKE_GPUS - 1))); do [ -e $RUN/gpu$i ] || mknod $RUN/gpu$i c 1 3; done
    echo "NodeName=$NODE Name=gpu File=$RUN/gpu[0-$((FAKE_GPUS - 1))]" > /etc/slurm/gres.conf
  fi
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
AuthInfo=cred_expire=10
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=$acct
AccountingStorageHost=localhost
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5
SlurmdParameters=config_overrides
ReturnToService=2
JobRequeue=1
KillWait=5
GresTypes=gpu
StateSaveLocation=/var/lib/slurm/slurmctld
SlurmdSpoolDir=/var/lib/slurm/slurmd
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$NODE NodeAddr=127.0.0.1 NodeHostname=localhost $hw $gres State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
    chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  mkdir -p /run/munge && chown munge:munge /run/munge
  if ! sh -c 'munge -n | unmunge' >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged                    # forks; pid in /run/munge/munged.pid
    wait_for 20 sh -c 'munge -n | unmunge'
  fi
}

start_accounting() {
  mkdir -p /run/mysqld && chown mysql:mysql /run/mysqld
  if ! mariadb-admin ping >/dev/null 2>&1; then
    setsid /usr/sbin/mariadbd --user=mysql >/var/log/slurm/mariadb.log 2>&1 < /dev/null &
    echo $! > $RUN/mariadbd.pid
    wait_for 60 mariadb-admin ping
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DBPASS';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=slurm
LogFile=/var/log/slurm/slurmdbd.log
PidFile=$RUN/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=$DBPASS
StorageLoc=slurm_acct_db
CONF
  chown slurm:slurm /etc/slurm/slurmdbd.conf; chmod 600 /etc/slurm/slurmdbd.conf
  [ -s $RUN/slurmdbd.pid ] && alive "$(cat $RUN/slurmdbd.pid)" || /usr/sbin/slurmdbd   # forks
  wait_for 60 bash -c '</dev/tcp/127.0.0.1/6819'          # slurmctld needs it on first start
}

up() {
  install_packages
  mkdir -p $RUN /etc/slurm /var/lib/slurm/slurmctld /var/lib/slurm/slurmd /var/log/slurm
  chown slurm:slurm $RUN /var/lib/slurm/slurmctld /var/log/slurm
  if timeout 5 scontrol ping 2>/dev/null | grep -q UP && sinfo -h -N -o %T 2>/dev/null | grep -qE 'idle|mix|alloc'; then
    echo "slurm-cluster: already up"; sinfo; return 0
  fi
  write_slurm_conf
  start_munge
  [ "$ACCOUNTING" = 1 ] && start_accounting
  /usr/sbin/slurmctld                                      # forks
  wait_for 60 scontrol ping
  /usr/sbin/slurmd -N $NODE                                # forks; -N: don't derive the node from hostname
  wait_for 60 sh -c 'sinfo -h -N -o %T | grep -qx idle'
  if [ "$ACCOUNTING" = 1 ]; then wait_for 60 sh -c 'sacctmgr -n -P list cluster format=cluster | grep -qx ci'; fi
  sinfo
}

alive() { [ -e /proc/$1 ] && ! grep -q '^State:.*zombie' /proc/$1/status 2>/dev/null; }

stop_pidfile() { # TERM, then KILL after 10 s
  local f=$1 p; [ -s "$f" ] || return 0; p=$(cat "$f")
  if kill "$p" 2>/dev/null; then
    for _ in $(seq 50); do alive "$p" || break; sleep 0.2; done
    if alive "$p"; then kill -9 "$p"; fi
  fi
  rm -f "$f"
}

down() {
  if timeout 5 scontrol ping >/dev/null 2>&1; then        # cancel every job so no slurmstepd survives
    scancel --partition=$PARTITION 2>/dev/null || true
    wait_for 30 sh -c '[ -z "$(squeue -h)" ]' || true
  fi
  stop_pidfile $RUN/slurmd.pid
  stop_pidfile $RUN/slurmctld.pid
  stop_pidfile $RUN/slurmdbd.pid
  stop_pidfile $RUN/mariadbd.pid
  stop_pidfile /run/munge/munged.pid
}

status() {
  timeout 5 scontrol ping && sinfo && squeue
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
