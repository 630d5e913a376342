"""The job store's schema history as Alembic revisions (``versions/``), applied by :mod:`img2vid.jobs.migrate`.

Each change of the store's shape is one revision here, never a hand-written ``ALTER`` elsewhere. The first
revisions reproduce the schemas img2vid's earlier versions created (``0001`` the first server's, ``0002``
the shared store with leases, ``0003`` without the ``route`` column), so a store any of them wrote is
stamped at its revision and upgraded from there. A revision must never lose a row: columns are added
nullable or with a server default, and one is dropped only when nothing reads it.
"""
