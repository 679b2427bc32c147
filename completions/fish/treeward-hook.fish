complete -c treeward-hook -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward-hook -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward-hook -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward-hook -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward-hook -l dry-run -d 'Say what would be recorded; change nothing. Errors then exit 2 (78 for bad configuration) instead of 0'
complete -c treeward-hook -s h -l help -d 'Print help'
complete -c treeward-hook -s V -l version -d 'Print version'
