complete -c treeward-sweep -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward-sweep -l budget -d 'How long the drain (assess, preserve, delete) may run after the residue is out of the way; the rest waits in the trash for the next pass. Such as 10s, 2m' -r
complete -c treeward-sweep -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward-sweep -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward-sweep -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward-sweep -l dry-run -d 'Plan and report what would be done; change nothing'
complete -c treeward-sweep -s h -l help -d 'Print help'
complete -c treeward-sweep -s V -l version -d 'Print version'
