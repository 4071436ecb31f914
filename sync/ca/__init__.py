"""The built-in CA working against the store: the CA hierarchy, issuance, revocation.

`sync.pki` builds and checks X.509 structures and knows nothing of the store; this package
decides what to sign from the config, signs with keys the store holds, and records the result.
"""
