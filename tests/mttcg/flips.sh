#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Stress the kernel's runtime switches while every vCPU is busy: the flips the tests and the
# bench do (kernel.sched_lags, cpu.lags on several groups, kernel.sched_schedstats), FLIPS
# times each. Under a kernel with jump labels each flip rewrites kernel text, which QEMU 7.2's
# multi-threaded TCG races with ("Oops: int3"); under --profile parallel none does.
#   cargo xtask vm --profile parallel --accel mttcg --cpus 2 --script tests/mttcg/flips.sh
# Exit 0: no oops, BUG or WARNING in the kernel log; 1: found one (printed); 2: setup failed.
# A crash that kills the guest is the vm command's own exit code (10).
set -u
FLIPS=${FLIPS:-300}
CG=/sys/fs/cgroup/flips
NCPU=$(grep -c ^processor /proc/cpuinfo)

mkdir -p "$CG" || exit 2
echo +cpu > "$CG/cgroup.subtree_control" || exit 2
i=0
while [ $i -lt 4 ]; do
	mkdir -p "$CG/g$i" || exit 2
	i=$((i + 1))
done

# Two spinners per vCPU, spread over the groups, so that every vCPU is busy while it flips.
pids=
n=0
while [ $n -lt $((NCPU * 2)) ]; do
	sh -c "echo \$\$ > $CG/g$((n % 4))/cgroup.procs; while :; do :; done" &
	pids="$pids $!"
	n=$((n + 1))
done

f=0
while [ $f -lt "$FLIPS" ]; do
	echo $((f % 2)) > /proc/sys/kernel/sched_lags
	echo $(((f + 1) % 2)) > /proc/sys/kernel/sched_schedstats
	for g in 0 1 2 3; do
		echo $(((f + g) % 2)) > "$CG/g$g/cpu.lags"
	done
	f=$((f + 1))
	[ $((f % 50)) -eq 0 ] && echo "flips: $f of $FLIPS"
done

kill $pids 2>/dev/null
wait 2>/dev/null
echo 1 > /proc/sys/kernel/sched_lags

if dmesg | grep -E "Oops|BUG:|WARNING:|int3"; then
	echo "flips: the kernel log shows a fault (above)"
	exit 1
fi
echo "flips: $FLIPS rounds on $NCPU vCPUs, kernel log clean"
