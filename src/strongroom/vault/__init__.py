"""The Vault-compatible surface (SPEC section 10): existing Vault and OpenBao clients, unchanged.

    schemas.py   the request and response bodies (the envelope, VaultErrors), for the schema
    kv.py        pure: KV version 2 at the mount ``secret`` in Strongroom's terms — paths to
                 item names, item values to and from Vault's ``data`` objects, the response
                 bodies (``data``, ``metadata``, ``keys``) and the mount description that the
                 CLIs ask for first
    errors.py    pure: a StrongroomError as Vault answers it, ``{"errors": ["…"]}``
    service.py   the operations, over the domain services (secrets, login, tokens): the same
                 rules, audit and limits as the native API

The routes are ``api/routes/vault_auth.py`` and ``api/routes/vault_kv.py``; Vault's ``LIST``
method reaches them through ``serving/vault_methods.py``.
"""
