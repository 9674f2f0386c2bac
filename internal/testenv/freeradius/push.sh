#!/bin/sh
# Waits (up to 20 s) for the test to approve or deny on the "phone":
# a file approve-USER or deny-USER in this directory.
dir=$(dirname "$0")
i=0
while [ $i -lt 200 ]; do
	[ -f "$dir/approve-$1" ] && exit 0
	[ -f "$dir/deny-$1" ] && exit 1
	sleep 0.1
	i=$((i + 1))
done
exit 1
