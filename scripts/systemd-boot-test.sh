#!/usr/bin/env bash
# The packaged units, run by a real systemd against simulators.
#
#   scripts/systemd-boot-test.sh PACKAGE.deb SIM-BINARY        (as root)
#
# Boots the machine's systemd as PID 1 of private PID, mount, cgroup, UTS and IPC namespaces,
# installs the package there with dpkg, and drives kalshi-riskd.service and two instances of
# kalshi-riskd@.service the way an operator would: start (READY and the status text), the
# key as a LoadCredential= credential, an operator in the service's group on the admin socket
# and a user outside it refused, systemctl reload (RELOADING then READY), systemctl kill -s
# SIGUSR1 (latch engaged, every group triggered), a frozen daemon killed by the watchdog and
# restarted with its kill latch re-applied, a bad config stopping the restarts
# (RestartPreventExitStatus=2), and two accounts side by side where a kill of one never
# touches the other's groups. SIM-BINARY is a build with the simulator (target/debug/kalshi-riskd).
# With KEEP_WORK=1, a failed run keeps its scratch directory and leaves the booted system up for
# ten minutes, to look at it with nsenter.
#
# The booted systemd touches nothing of this machine's: /etc, /usr and /var are overlays whose
# writes land in a scratch directory; /run, /tmp and /var/tmp are private tmpfs mounts; its
# cgroup tree is a private subtree; and its unit path holds only a few empty targets, the
# journal and the units under test, with the boot units that act on a whole machine (sysctl,
# binfmt, modules-load, remount-fs, tmpfiles, udev, timesyncd) masked besides. It shares the
# network namespace, so the daemons reach the simulators and /metrics on 127.0.0.1.
set -euo pipefail
[ $# = 2 ] || { sed -n '2,4p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ "$(id -u)" = 0 ] || { echo "systemd-boot-test: needs root (namespaces, mounts, cgroups)" >&2; exit 2; }
deb=$(realpath "$1")
sim=$(realpath "$2")
here=$(cd "$(dirname "$0")" && pwd)
curl_signed=$here/kalshi-curl
mkdir -p "$here/../target"
# Not under /tmp: the booted system sees its own empty /tmp.
work=$(mktemp -d "$(realpath "$here/../target")/systemd-boot.XXXXXX")

if [ -f /sys/fs/cgroup/cgroup.controllers ]; then cgroot=/sys/fs/cgroup
elif [ -d /sys/fs/cgroup/unified ]; then cgroot=/sys/fs/cgroup/unified
else echo "systemd-boot-test: no cgroup v2 hierarchy on this machine" >&2; exit 2; fi
cg=$cgroot/kalshi-riskd-boot-test.$$

pids=()
pid1=
cleanup() {
  local rc=$?
  if [ -n "$pid1" ]; then kill -KILL "$pid1" 2>/dev/null || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -d "$cg" ]; then find "$cg" -depth -type d -exec rmdir {} + 2>/dev/null || true; fi
  if [ "$rc" = 0 ] || [ -z "${KEEP_WORK:-}" ]; then rm -rf "$work"; else echo "kept: $work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
  echo "FAILED: $*" >&2
  if [ -n "$pid1" ]; then
    echo "--- systemctl status" >&2
    ns systemctl status --no-pager --full 'kalshi-riskd*' >&2 || true
    echo "--- journal (last 80 lines)" >&2
    ns journalctl --no-pager -n 80 >&2 || true
    if [ -n "${KEEP_WORK:-}" ]; then
      echo "the system stays up for 10 minutes: nsenter -t $pid1 -m -p -C -u -i -- systemctl ..." >&2
      sleep 600
    fi
  fi
  exit 1
}
pass() { echo "ok: $*"; }
ns() { nsenter -t "$pid1" -m -p -C -u -i -- "$@"; }
# Polls a command until it succeeds, for at most $1 seconds.
until_true() {
  local secs=$1; shift
  local end=$((SECONDS + secs))
  until "$@"; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.2
  done
}
prop() { ns systemctl show -p "$2" --value "$1"; }

# --- Three simulated exchanges: one for the plain unit, one per template instance.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
start_sim() { # name
  local d=$work/sim-$1
  mkdir -p "$d"
  "$sim" sim --listen 127.0.0.1:0 --tier unlimited --key-dir "$d/key" >"$d/out" 2>"$d/err" &
  pids+=($!)
  until_true 20 grep -q '^kalshi-riskd sim listening on ' "$d/out" || fail "simulator $1 did not start"
  sed -n 's/^kalshi-riskd sim listening on //p' "$d/out" > "$d/addr"
}
for s in plain a b; do start_sim "$s"; done
# Each daemon runs the package's example policies: one group per exchange instance of each.
dpkg-deb -x "$deb" "$work/pkg"
npol=$(python3 -c 'import glob,sys,tomllib
print(sum(len(tomllib.load(open(f,"rb"))["exchange_indexes"]) for f in glob.glob(sys.argv[1]+"/*.toml")))' \
  "$work/pkg/usr/share/doc/kalshi-riskd/examples/policies")
addr() { cat "$work/sim-$1/addr"; }
# Groups on simulator $1 as "total triggered".
groups() {
  curl -fsS "http://$(addr "$1")/_sim/groups" |
    python3 -c 'import json,sys; g=json.load(sys.stdin); print(len(g), sum(1 for x in g if x["triggered"]))'
}
all_triggered() { local n t; read -r n t < <(groups "$1"); [ "$n" -gt 0 ] && [ "$n" = "$t" ]; }
none_triggered() { local n t; read -r n t < <(groups "$1"); [ "$n" -gt 0 ] && [ "$t" = 0 ]; }

# --- What runs inside, before systemd: install the package, configure three daemons, add users.
port_plain=$(free_port); port_a=$(free_port); port_b=$(free_port)
config() { # sim-name metrics-port state-dir admin-socket
  cat <<CFG
[exchange]
environment = "sim"
rest_url = "http://$(addr "$1")/trade-api/v2"
ws_url = "ws://$(addr "$1")/trade-api/ws/v2"
api_key_id = "$(cat "$work/sim-$1/key/key.id")"
private_key_path = "KEYPATH"
write_budget_per_s = 100
[policies]
dir = "policies"
[kill]
scope = "account"
hold = true
[http]
listen = "127.0.0.1:$2"
admin_socket = "$4"
[state]
dir = "$3"
[log]
format = "json"
CFG
}
config plain "$port_plain" /var/lib/kalshi-riskd /run/kalshi-riskd/admin.sock |
  sed 's#KEYPATH#/etc/kalshi-riskd/key.pem#' > "$work/plain.toml"
for i in a b; do
  port_var=port_$i
  config "$i" "${!port_var}" "/var/lib/kalshi-riskd/$i" "/run/kalshi-riskd/$i/admin.sock" |
    sed "s#KEYPATH#/etc/kalshi-riskd/$i/key.pem#" > "$work/$i.toml"
done

cat > "$work/prepare.sh" <<PREPARE
set -eu
dpkg -i "$deb" >/dev/null
getent passwd kalshi-riskd >/dev/null
useradd --system --no-create-home --shell /usr/sbin/nologin --groups kalshi-riskd riskd-operator
useradd --system --no-create-home --shell /usr/sbin/nologin riskd-outsider
# Configs as an operator writes them: group-readable by the service, keys readable by root only
# (the service gets the key as a credential).
install -m 0640 -g kalshi-riskd "$work/plain.toml" /etc/kalshi-riskd/kalshi-riskd.toml
install -m 0600 "$work/sim-plain/key/key.pem" /etc/kalshi-riskd/key.pem
cp /usr/share/doc/kalshi-riskd/examples/policies/*.toml /etc/kalshi-riskd/policies/
for i in a b; do
  install -d -m 0750 -g kalshi-riskd /etc/kalshi-riskd/\$i /etc/kalshi-riskd/\$i/policies
  install -m 0640 -g kalshi-riskd "$work/\$i.toml" /etc/kalshi-riskd/\$i/kalshi-riskd.toml
  install -m 0600 "$work/sim-\$i/key/key.pem" /etc/kalshi-riskd/\$i/key.pem
  cp /usr/share/doc/kalshi-riskd/examples/policies/*.toml /etc/kalshi-riskd/\$i/policies/
done
chmod 0644 /etc/kalshi-riskd/policies/*.toml /etc/kalshi-riskd/[ab]/policies/*.toml
PREPARE

cat > "$work/inner.sh" <<'INNER'
set -eu
W=$1
mount --make-rprivate /
for d in etc usr var; do
  mkdir -p "$W/overlay/$d/upper" "$W/overlay/$d/work"
  mount -t overlay overlay -o "lowerdir=/$d,upperdir=$W/overlay/$d/upper,workdir=$W/overlay/$d/work" "/$d"
done
mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /var/tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
# Everything above is private to these namespaces. Now share it among them, as systemd does at a
# real boot (but not in a container, where it leaves propagation to the container manager): the
# credentials of LoadCredential= are mounted in a child namespace and must propagate back.
mount --make-rshared /
sh "$W/prepare.sh"
exec env -i container=kalshi-riskd-test SYSTEMD_UNIT_PATH="$W/units" PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  /lib/systemd/systemd --system --log-target=journal --log-level=debug --show-status=0
INNER

# --- The unit path: empty targets, the journal, the units under test (as dpkg installed them).
units=$work/units
mkdir -p "$units/sockets.target.wants" "$units/sysinit.target.wants"
target() { printf '[Unit]\nDescription=%s\n%s\n' "$1" "${2:-}" > "$units/$1"; }
target sysinit.target
target sockets.target
target basic.target $'Requires=sysinit.target\nAfter=sysinit.target sockets.target'
target multi-user.target $'Requires=basic.target\nAfter=basic.target'
target shutdown.target $'DefaultDependencies=no\nRefuseManualStart=yes'
target umount.target 'DefaultDependencies=no'
for t in network.target network-online.target time-sync.target timers.target paths.target slices.target; do
  target "$t"
done
ln -s multi-user.target "$units/default.target"
for u in systemd-journald.service systemd-journald.socket systemd-journald-dev-log.socket \
         systemd-journald-audit.socket kalshi-riskd.service kalshi-riskd@.service; do
  ln -s "/usr/lib/systemd/system/$u" "$units/$u"
done
ln -s ../systemd-journald.socket ../systemd-journald-dev-log.socket "$units/sockets.target.wants/"
ln -s ../systemd-journald.service "$units/sysinit.target.wants/"
for m in systemd-sysctl.service systemd-binfmt.service systemd-modules-load.service \
         systemd-remount-fs.service systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service \
         systemd-tmpfiles-clean.service systemd-tmpfiles-clean.timer systemd-udevd.service \
         systemd-udev-trigger.service systemd-timesyncd.service systemd-random-seed.service \
         systemd-sysusers.service systemd-firstboot.service systemd-machine-id-commit.service; do
  ln -s /dev/null "$units/$m"
done

# --- Boot.
mkdir -p "$cg"
(
  echo "$BASHPID" > "$cg/cgroup.procs"
  exec unshare --fork --pid --mount --mount-proc --cgroup --uts --ipc --propagation private \
    bash "$work/inner.sh" "$work"
) >"$work/boot.log" 2>&1 &
pids+=($!)
unshare_pid=$!
booted() {
  pid1=$(pgrep -P "$unshare_pid" -x systemd || true)
  [ -n "$pid1" ] && [ "$(ns systemctl is-system-running 2>/dev/null || true)" = running ]
}
until_true 120 booted || { cat "$work/boot.log" >&2; fail "systemd did not boot"; }
pass "systemd $(ns systemctl --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p') booted as PID 1 of private namespaces (host pid $pid1)"

# --- Start: READY, the status text, the key as a credential.
ns systemctl start kalshi-riskd.service || fail "systemctl start kalshi-riskd"
[ "$(prop kalshi-riskd ActiveState)/$(prop kalshi-riskd SubState)" = active/running ] || fail "not active/running"
status_text=$(prop kalshi-riskd StatusText)
[ "$status_text" = watching ] || fail "status text '$status_text', wanted 'watching'"
pass "started: READY, active/running, status text '$status_text'"
main=$(prop kalshi-riskd MainPID)
cred=$(ns cat "/proc/$main/environ" | tr '\0' '\n' | sed -n 's/^CREDENTIALS_DIRECTORY=//p')
[ -n "$cred" ] || fail "no CREDENTIALS_DIRECTORY in the daemon's environment"
created() { local n t; read -r n t < <(groups "$1"); [ "$n" = "$npol" ]; }
until_true 20 created plain || fail "the daemon did not create its $npol groups on the simulator: $(groups plain)"
pass "the key came as a credential ($cred/kalshi-key, $(ns stat -c '%U:%G %a' "$cred/kalshi-key")); /etc/kalshi-riskd/key.pem is root's alone; $npol groups created"

# --- The admin socket: an operator in the group is answered, a user outside it refused.
set +e
out=$(ns runuser -u riskd-operator -- kalshi-riskd status 2>&1); rc=$?
set -e
[ "$rc" = 0 ] || fail "operator status exited $rc: $out"
grep -q btc-daily-mm <<<"$out" || fail "operator status lists no strategy: $out"
set +e
out=$(ns runuser -u riskd-outsider -- kalshi-riskd --socket /run/kalshi-riskd/admin.sock status 2>&1); rc=$?
set -e
[ "$rc" = 4 ] || fail "a user outside the group: status exited $rc (wanted 4, permission denied): $out"
pass "operator in group kalshi-riskd: status exit 0; a user outside it: exit 4 ($out)"

# --- Reload: RELOADING=1 then READY=1, and the policies read again.
metric() { # port name
  curl -fsS "http://127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m { print $2 }'
}
before=$(metric "$port_plain" kalshi_riskd_policy_reload_last_success_timestamp_seconds)
sleep 1.1 # the timestamp has a one-second resolution
ns systemctl reload kalshi-riskd.service || fail "systemctl reload"
reloaded() { [ "$(metric "$port_plain" kalshi_riskd_policy_reload_last_success_timestamp_seconds)" != "$before" ]; }
until_true 20 reloaded || fail "no successful reload on /metrics"
manager_log() { ns journalctl --no-pager -o cat _PID=1; }
went_through_reload() {
  local log; log=$(manager_log)
  grep -q 'kalshi-riskd.service: Changed running -> reload' <<<"$log" &&
    grep -q 'kalshi-riskd.service: Changed reload -> running' <<<"$log"
}
until_true 10 went_through_reload || fail "systemd saw no running -> reload -> running"
[ "$(prop kalshi-riskd ActiveState)" = active ] || fail "not active after the reload"
pass "reload: systemd went running -> reload -> running; reload success at $(metric "$port_plain" kalshi_riskd_policy_reload_last_success_timestamp_seconds)"

# --- SIGUSR1: the latch engages and every group is triggered.
ns systemctl kill -s SIGUSR1 kalshi-riskd.service
until_true 20 all_triggered plain || fail "SIGUSR1: groups not all triggered: $(groups plain)"
set +e
out=$(ns runuser -u riskd-operator -- kalshi-riskd status 2>&1); rc=$?
set -e
[ "$rc" = 6 ] || fail "status after SIGUSR1 exited $rc (wanted 6): $out"
ns grep -q kill_engaged /var/lib/kalshi-riskd/audit.jsonl || fail "no kill_engaged in the audit log"
pass "systemctl kill -s SIGUSR1: latch engaged, $(groups plain | cut -d' ' -f2) groups triggered, status exits 6, audit log has it"

# --- The watchdog: a frozen daemon is killed and restarted, and re-applies the latch. While it
# is frozen, someone resets a group on the exchange; the restarted daemon must trigger it again.
restarts=$(prop kalshi-riskd NRestarts)
ns kill -STOP "$main"
# Any group, addressed with its own subaccount and exchange index (the groups are created
# several at a time, so which comes first is not fixed).
read -r gid gsub gidx < <(curl -fsS "http://$(addr plain)/_sim/groups" |
  python3 -c 'import json,sys; g=json.load(sys.stdin)[0]; print(g["id"], g["subaccount"], g["exchange_index"])')
"$curl_signed" "$(cat "$work/sim-plain/key/key.id")" "$work/sim-plain/key/key.pem" PUT \
  "http://$(addr plain)/trade-api/v2/portfolio/order_groups/$gid/reset?subaccount=$gsub&exchange_index=$gidx" '{}' > "$work/reset.out"
grep -q 'HTTP 200' "$work/reset.out" || fail "could not reset $gid on the simulator: $(cat "$work/reset.out")"
all_triggered plain && fail "the reset on the simulator did not take"
restarted() {
  [ "$(prop kalshi-riskd NRestarts)" -gt "$restarts" ] && [ "$(prop kalshi-riskd ActiveState)" = active ] &&
    [ "$(prop kalshi-riskd MainPID)" != "$main" ]
}
until_true 60 restarted || fail "the watchdog did not restart the frozen daemon"
log=$(manager_log)
grep -q 'kalshi-riskd.service: Watchdog timeout' <<<"$log" || fail "no watchdog timeout in the journal"
until_true 20 all_triggered plain || fail "after the restart the latch was not re-applied: $(groups plain)"
set +e
out=$(ns runuser -u riskd-operator -- kalshi-riskd status 2>&1); rc=$?
set -e
[ "$rc" = 6 ] || fail "status after the watchdog restart exited $rc (wanted 6): $out"
pass "watchdog: frozen daemon killed and restarted (NRestarts $restarts -> $(prop kalshi-riskd NRestarts)); the latch held and re-triggered $gid (exchange index $gidx), reset meanwhile"

# --- A bad config: exit 2, and no restart loop.
ns sh -c 'echo "this is not toml [" >> /etc/kalshi-riskd/kalshi-riskd.toml'
if ns systemctl restart kalshi-riskd.service 2>/dev/null; then fail "started on a bad config"; fi
sleep 7 # RestartSec=2s: a restart loop would have come round three times
[ "$(prop kalshi-riskd ActiveState)" = failed ] || fail "after a bad config: $(prop kalshi-riskd ActiveState), wanted failed"
# A manual start zeroes the count of automatic restarts.
[ "$(prop kalshi-riskd NRestarts)" = 0 ] || fail "a bad config restarted the unit $(prop kalshi-riskd NRestarts) times"
[ "$(prop kalshi-riskd ExecMainStatus)" = 2 ] || fail "a bad config: exit $(prop kalshi-riskd ExecMainStatus), wanted 2"
log=$(manager_log)
grep -q 'kalshi-riskd.service: Service will not restart (prevented by exit status)' <<<"$log" ||
  fail "systemd did not say the exit status prevented the restart"
pass "bad config: exit 2, the unit failed and was not restarted (prevented by exit status)"
ns systemctl reset-failed kalshi-riskd.service

# --- Two accounts side by side: a kill of one never touches the other's groups.
ns systemctl start kalshi-riskd@a.service kalshi-riskd@b.service || fail "starting the two instances"
until_true 20 created a || fail "instance a: groups $(groups a)"
until_true 20 created b || fail "instance b: groups $(groups b)"
[ -n "$(metric "$port_a" kalshi_riskd_start_time_seconds)" ] || fail "instance a: no /metrics on $port_a"
[ -n "$(metric "$port_b" kalshi_riskd_start_time_seconds)" ] || fail "instance b: no /metrics on $port_b"
ns systemctl kill -s SIGUSR1 kalshi-riskd@a.service
until_true 20 all_triggered a || fail "instance a: kill did not trigger its groups: $(groups a)"
sleep 1
none_triggered b || fail "a kill of instance a touched instance b's groups: $(groups b)"
set +e
out_a=$(ns runuser -u riskd-operator -- kalshi-riskd -c /etc/kalshi-riskd/a/kalshi-riskd.toml status 2>&1); rc_a=$?
out_b=$(ns runuser -u riskd-operator -- kalshi-riskd -c /etc/kalshi-riskd/b/kalshi-riskd.toml status 2>&1); rc_b=$?
set -e
[ "$rc_a" = 6 ] || fail "instance a status exited $rc_a (wanted 6): $out_a"
[ "$rc_b" = 0 ] || fail "instance b status exited $rc_b (wanted 0): $out_b"
ns test -S /run/kalshi-riskd/a/admin.sock || fail "instance a: no admin socket"
ns test -f /var/lib/kalshi-riskd/a/state.json || fail "instance a: no state.json"
ns test -f /var/lib/kalshi-riskd/b/state.json || fail "instance b: no state.json"
pass "two instances (metrics on $port_a and $port_b): a kill of a triggered a's $npol groups and none of b's; status a exits 6, b exits 0"

# --- A clean stop.
ns systemctl stop kalshi-riskd@a.service kalshi-riskd@b.service
for u in kalshi-riskd@a kalshi-riskd@b; do
  [ "$(prop $u ActiveState)" = inactive ] || fail "$u: $(prop $u ActiveState) after stop"
done
pass "stopped cleanly"
echo "systemd boot test: all passed"
