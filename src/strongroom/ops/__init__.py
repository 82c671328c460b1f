"""Day-2 operations run on the server host against the database directly (SPEC sections 6
and 11): changing the master key (``master_key.py``) and SQLite backups (``backup.py``).

They work on the synchronous ``strongroom.db.engine.Database``, as the other offline commands
do, and each records an audit event.
"""
