"""Protocol stand-ins for databases that cannot be installed on these machines.

Each is named as a stand-in wherever it is used: tests against it show that a connector speaks
the protocol and keeps the contract as far as the stand-in implements the database, not that it
works against the genuine server. The gaps are listed in ``docs/connectors.md``.
"""
