"""`certsync serve`: the CA's network face over the same store and config as the CLI.

    asgi = sync.server.app.build(config)          # a Starlette application
    sync.server.runtime.run(config, listen)       # uvicorn, TLS, graceful shutdown

Protocols each live in one module and add their routes: revocation (CRL, OCSP), est, acme, api.
The server keeps no state of its own: nonces, orders, tokens and the audit trail are in the store,
so replicas on one PostgreSQL store behave as one.
"""
