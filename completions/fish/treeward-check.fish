complete -c treeward-check -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward-check -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward-check -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward-check -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward-check -l all -d 'Every ledger record and every entry under the configured roots'
complete -c treeward-check -s h -l help -d 'Print help'
complete -c treeward-check -s V -l version -d 'Print version'
