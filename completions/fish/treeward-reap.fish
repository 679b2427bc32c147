complete -c treeward-reap -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward-reap -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward-reap -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward-reap -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward-reap -l dry-run -d 'Plan and report what would be done; change nothing'
complete -c treeward-reap -s h -l help -d 'Print help'
complete -c treeward-reap -s V -l version -d 'Print version'
