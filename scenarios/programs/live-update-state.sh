#!/bin/sh
# What a live update leaves visible to userspace, checked from busybox's shell and printed as
# KTAP: the device, KHO in debugfs, which boot this is, and (after a kexec) the kernel's word that
# it came from another one. Also reads its standard input: the scenario writes three lines.
n=0
check() {
	n=$((n + 1))
	if eval "$2"; then echo "ok $n $1"; else echo "not ok $n $1"; fi
}
echo "KTAP version 1"
echo "1..5"
check liveupdate_device '[ -c /dev/liveupdate ]'
check kho_in_debugfs '[ -d /sys/kernel/debug/kho ]'
check boot_index "grep -q 'luo_harness.boot=$EXPECT_BOOT' /proc/cmdline && [ \"\$LUO_HARNESS_BOOT\" = $EXPECT_BOOT ]"
if [ "$EXPECT_BOOT" = 0 ]; then
	echo "ok 4 handed_over # SKIP the first boot came from no kernel"
	n=4
else
	check handed_over "dmesg | grep -q 'KHO: exec from'"
fi
check stdin_lines '[ "$(wc -l)" -eq 3 ]'
