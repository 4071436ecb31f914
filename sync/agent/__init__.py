"""`certsync agent`: keeps certificate files on a host (or in a container) current, client-driven.

It makes its key locally (the key never leaves the host), enrolls and renews through the server's
REST API with a CSR, verifies the new pair before touching the files, swaps them atomically,
runs a reload command, rolls back if the reload fails, and reports the outcome to the server.
It needs only its own small config (docs/agent.md): no store, no master key, no cloud SDK.

    config   the agent's TOML (agent.toml, or an [agent] table of any file)
    client   the REST calls (sign, renew, report), with one error split: retry later or not
    files    the file set: atomic writes with owner/group/mode, read back, restore
    verify   key matches, chain to the trusted root, validity, names
    deploy   one certificate's run: due? enroll/renew, verify, install, reload, roll back, report
    loop     --once, or the daemon: wake for the next renewal, back off with jitter, SIGTERM
"""
