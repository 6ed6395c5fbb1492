#!/bin/sh
# PID 1 of the web app container. The kernel gives PID 1 no default signal actions, so
# httpd alone would ignore `docker stop`'s SIGTERM and be killed 10 s later; this script
# forwards the signal and exits as soon as httpd has stopped.
set -u
busybox httpd -f -v -p "${PORT:-8080}" -h /srv/www &
httpd=$!
trap 'kill -TERM "$httpd" 2>/dev/null' TERM INT
wait "$httpd"
status=$?
# wait returns early (status > 128) when the trap ran; collect httpd's own exit then.
if kill -0 "$httpd" 2>/dev/null; then
    wait "$httpd"
    status=$?
fi
[ "$status" -eq 143 ] && status=0
exit "$status"
