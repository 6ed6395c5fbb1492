#!/bin/sh
# Remove the firewall rules engines leave behind after they stop, by known names only:
#   clean-firewall.sh [--chains A,B] [--policy-file FILE] MARK...
# deletes every rule of a built-in or other chain whose text contains a MARK (for example
# "-j DOCKER" or "docker0"), flushes and deletes the chains A, B, ... and, when FILE exists,
# restores the FORWARD policy it recorded (dockerd sets DROP and never restores it).
# Prints one line per change and nothing when there was nothing to do.
set -u
chains=""
policy_file=""
while [ $# -gt 0 ]; do
    case "$1" in
        --chains) chains=$2; shift 2 ;;
        --policy-file) policy_file=$2; shift 2 ;;
        *) break ;;
    esac
done
chains=$(printf '%s' "$chains" | tr ',' ' ')

listed() {  # is chain $1 one of the chains to delete?
    for c in $chains; do [ "$c" = "$1" ] && return 0; done
    return 1
}

for cmd in iptables ip6tables; do
    command -v "$cmd" > /dev/null 2>&1 || continue
    for table in filter nat mangle raw; do
        rules=$("$cmd" -t "$table" -S 2> /dev/null) || continue
        printf '%s\n' "$rules" | while IFS= read -r rule; do
            case "$rule" in "-A "*) ;; *) continue ;; esac
            chain=$(printf '%s' "$rule" | cut -d' ' -f2)
            listed "$chain" && continue  # goes away with its chain
            for mark in "$@"; do
                case "$rule" in
                    *"$mark"*)
                        # iptables -S quotes its output for the shell: eval gives back the words
                        eval "\"\$cmd\" -t \"\$table\" -D ${rule#-A }" \
                            && echo "$cmd -t $table: deleted $rule"
                        break ;;
                esac
            done
        done
        present=""
        for chain in $chains; do
            if "$cmd" -t "$table" -S "$chain" > /dev/null 2>&1; then
                "$cmd" -t "$table" -F "$chain"
                present="$present $chain"
            fi
        done
        for chain in $present; do
            "$cmd" -t "$table" -X "$chain" && echo "$cmd -t $table: deleted chain $chain"
        done
    done
done

if [ -n "$policy_file" ] && [ -s "$policy_file" ]; then
    wanted=$(cut -d' ' -f3 "$policy_file")
    current=$(iptables -S FORWARD | head -n 1 | cut -d' ' -f3)
    if [ -n "$wanted" ] && [ "$wanted" != "$current" ]; then
        iptables -P FORWARD "$wanted" && echo "iptables: FORWARD policy $current -> $wanted"
    fi
    rm -f "$policy_file"
fi
exit 0
