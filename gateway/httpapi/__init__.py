"""deepstream's HTTP API: ``request`` reads a request strictly (imported by ``connection``),
``ops`` turns operations into messages and replies into results, ``api`` runs a batch,
``tokens`` keeps the logins ``POST {http.path}/auth`` issues.

Nothing is imported here: ``connection`` needs ``request`` while ``api`` needs the handlers,
which need ``connection``.
"""
