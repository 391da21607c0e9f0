# Completes each argument as bash would at <TAB>, with bash-completion (which loads git's
# completion and ours on demand), printing the sorted candidates of each on one line.
# usage: bash --norc complete.bash LINE...
source /usr/share/bash-completion/bash_completion
comp() {
  local line="$1"
  read -ra COMP_WORDS <<< "$line"
  [[ "$line" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))
  COMP_LINE="$line"; COMP_POINT=${#line}
  local cmd=${COMP_WORDS[0]}
  _completion_loader "$cmd" >/dev/null 2>&1
  local f; f=$(complete -p "$cmd" | sed -E 's/.*-F ([^ ]+).*/\1/')
  COMPREPLY=()
  "$f" "$cmd" "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '; echo
}
for line in "$@"; do comp "$line"; done
