"""The connector conformance suite, shipped as a pytest plugin (entry point ``pytest11``).

Run it against any connector::

    pytest conformance/ --connector sql --connector-url sqlite+aiosqlite:///tmp/x.db
    pytest --pyargs conformance --connector mypkg.store:MyConnector --connector-url ...
"""
