complete -c treeward-check -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward-check -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward-check -l all -d 'Every ledger record and every entry under the configured roots'
complete -c treeward-check -s h -l help -d 'Print help'
complete -c treeward-check -s V -l version -d 'Print version'
