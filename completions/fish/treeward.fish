# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_treeward_global_optspecs
    string join \n h/help V/version
end

function __fish_treeward_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_treeward_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_treeward_using_subcommand
    set -l cmd (__fish_treeward_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c treeward -n "__fish_treeward_needs_command" -s h -l help -d 'Print help'
complete -c treeward -n "__fish_treeward_needs_command" -s V -l version -d 'Print version'
complete -c treeward -n "__fish_treeward_needs_command" -f -a "list" -d 'Ledger records joined with what is on disk, plus unrecorded entries under the roots'
complete -c treeward -n "__fish_treeward_needs_command" -f -a "release" -d 'Mark a worktree done with: the reaper may take it without waiting for the grace period'
complete -c treeward -n "__fish_treeward_needs_command" -f -a "restore" -d 'Recreate a worktree from preserved refs, with its uncommitted state'
complete -c treeward -n "__fish_treeward_needs_command" -f -a "install-hook" -d 'Install the post-checkout shim, chaining an existing hook'
complete -c treeward -n "__fish_treeward_needs_command" -f -a "uninstall-hook" -d 'Remove the shim and put back the hook it chained'
complete -c treeward -n "__fish_treeward_needs_command" -f -a "lease" -d 'Run CMD while holding a lease on the worktree at PATH'
complete -c treeward -n "__fish_treeward_needs_command" -f -a "doctor" -d 'Check the set-up; exit 1 listing each problem'
complete -c treeward -n "__fish_treeward_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c treeward -n "__fish_treeward_using_subcommand list" -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand list" -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward -n "__fish_treeward_using_subcommand list" -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward -n "__fish_treeward_using_subcommand list" -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward -n "__fish_treeward_using_subcommand list" -s h -l help -d 'Print help'
complete -c treeward -n "__fish_treeward_using_subcommand release" -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand release" -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward -n "__fish_treeward_using_subcommand release" -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward -n "__fish_treeward_using_subcommand release" -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward -n "__fish_treeward_using_subcommand release" -l dry-run -d 'Change nothing; say what would change'
complete -c treeward -n "__fish_treeward_using_subcommand release" -s h -l help -d 'Print help'
complete -c treeward -n "__fish_treeward_using_subcommand restore" -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand restore" -l path -d 'Where to restore (default: the record\'s path). Something there is moved aside, never overwritten' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand restore" -l repo -d 'The repository, when no ledger record lists the refs' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand restore" -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward -n "__fish_treeward_using_subcommand restore" -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward -n "__fish_treeward_using_subcommand restore" -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward -n "__fish_treeward_using_subcommand restore" -l dry-run -d 'Change nothing; say where the worktree would be restored and what would be moved aside'
complete -c treeward -n "__fish_treeward_using_subcommand restore" -s h -l help -d 'Print help'
complete -c treeward -n "__fish_treeward_using_subcommand install-hook" -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand install-hook" -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward -n "__fish_treeward_using_subcommand install-hook" -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward -n "__fish_treeward_using_subcommand install-hook" -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward -n "__fish_treeward_using_subcommand install-hook" -l dry-run -d 'Change nothing; say what would be done to each hooks directory'
complete -c treeward -n "__fish_treeward_using_subcommand install-hook" -s h -l help -d 'Print help'
complete -c treeward -n "__fish_treeward_using_subcommand uninstall-hook" -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand uninstall-hook" -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward -n "__fish_treeward_using_subcommand uninstall-hook" -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward -n "__fish_treeward_using_subcommand uninstall-hook" -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward -n "__fish_treeward_using_subcommand uninstall-hook" -l dry-run -d 'Change nothing; say what would be done to each hooks directory'
complete -c treeward -n "__fish_treeward_using_subcommand uninstall-hook" -s h -l help -d 'Print help'
complete -c treeward -n "__fish_treeward_using_subcommand lease" -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand lease" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c treeward -n "__fish_treeward_using_subcommand doctor" -l config -d 'Configuration file (default: $TREEWARD_CONFIG, else /etc/treeward/config.toml if it exists, else embedded defaults)' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand doctor" -l unit-dir -d 'Look for systemd units here instead of the standard directories (repeatable)' -r -F
complete -c treeward -n "__fish_treeward_using_subcommand doctor" -l json -d 'Print one JSON document on stdout instead of the human summary'
complete -c treeward -n "__fish_treeward_using_subcommand doctor" -s q -l quiet -d 'Print nothing but warnings and errors (the exit status tells the result); `--json` still prints its document'
complete -c treeward -n "__fish_treeward_using_subcommand doctor" -s v -l verbose -d 'Log more: -v debug, -vv trace (TREEWARD_LOG, when set, wins)'
complete -c treeward -n "__fish_treeward_using_subcommand doctor" -s h -l help -d 'Print help'
complete -c treeward -n "__fish_treeward_using_subcommand help; and not __fish_seen_subcommand_from list release restore install-hook uninstall-hook lease doctor help" -f -a "list" -d 'Ledger records joined with what is on disk, plus unrecorded entries under the roots'
complete -c treeward -n "__fish_treeward_using_subcommand help; and not __fish_seen_subcommand_from list release restore install-hook uninstall-hook lease doctor help" -f -a "release" -d 'Mark a worktree done with: the reaper may take it without waiting for the grace period'
complete -c treeward -n "__fish_treeward_using_subcommand help; and not __fish_seen_subcommand_from list release restore install-hook uninstall-hook lease doctor help" -f -a "restore" -d 'Recreate a worktree from preserved refs, with its uncommitted state'
complete -c treeward -n "__fish_treeward_using_subcommand help; and not __fish_seen_subcommand_from list release restore install-hook uninstall-hook lease doctor help" -f -a "install-hook" -d 'Install the post-checkout shim, chaining an existing hook'
complete -c treeward -n "__fish_treeward_using_subcommand help; and not __fish_seen_subcommand_from list release restore install-hook uninstall-hook lease doctor help" -f -a "uninstall-hook" -d 'Remove the shim and put back the hook it chained'
complete -c treeward -n "__fish_treeward_using_subcommand help; and not __fish_seen_subcommand_from list release restore install-hook uninstall-hook lease doctor help" -f -a "lease" -d 'Run CMD while holding a lease on the worktree at PATH'
complete -c treeward -n "__fish_treeward_using_subcommand help; and not __fish_seen_subcommand_from list release restore install-hook uninstall-hook lease doctor help" -f -a "doctor" -d 'Check the set-up; exit 1 listing each problem'
complete -c treeward -n "__fish_treeward_using_subcommand help; and not __fish_seen_subcommand_from list release restore install-hook uninstall-hook lease doctor help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
