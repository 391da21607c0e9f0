# Completes LINE as an interactive zsh would at <TAB> (compinit, with the user's
# site-functions in fpath), printing the sorted candidates offered.
# usage: zsh -f complete.zsh HOME LINE OUT
zmodload zsh/zpty
H=$1; LINE=$2; OUT=$3
: > $OUT
zpty z env -i HOME=$H PATH=$PATH TERM=dumb zsh -f -i
zpty -w z "fpath=($H/.local/share/zsh/site-functions \$fpath); autoload -U compinit; compinit -u -d $H/.zcompdump"
zpty -w z "compadd () { builtin compadd -O __h \"\$@\"; print -l -- \$__h >> $OUT; builtin compadd \"\$@\"; }"
zpty -w z "zstyle ':completion:*' menu no"
zpty -wn z "$LINE"$'\t'
# Wait for the candidates (a loaded machine is slow to start compinit), then a little more.
for i in {1..80}; do [[ -s $OUT ]] && break; sleep 0.25; done
sleep 0.5
zpty -d z
sort -u $OUT | tr '\n' ' '; echo
