complete -c treeward-reap -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward-reap -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward-reap -l dry-run -d 'Plan and report what would be done; change nothing'
complete -c treeward-reap -s h -l help -d 'Print help'
complete -c treeward-reap -s V -l version -d 'Print version'
